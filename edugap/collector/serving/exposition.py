"""The text /metrics serves: rendered once per snapshot, cut per family and per province.

At 60,000 schools a full scrape is about 1.4 million samples. Rendering them with pre-escaped
labels straight from the snapshot, and keeping the encoded bytes per (family, province), makes
every later scrape a join of cached bytes and a province's shard a join of its own chunks
(bench/scrape.py measures both against `generate_latest`). The collector's own health series
are cheap and change between snapshots, so they are rendered fresh with `generate_latest`.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from prometheus_client import CollectorRegistry, generate_latest

from edugap.collector.model import AreaSummary, IngestStats, SchoolStatus, Snapshot
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.httpguard import HttpCollector
from edugap.collector.serving.metrics import (
    PROVINCE_COUNTS,
    PROVINCE_VALUES,
    SCHOOL_INFO,
    SCHOOL_SHORTFALL,
    SCHOOL_STATES,
    ErrorCount,
    HealthCollector,
    SnapshotCollector,
    areas_in_shard_order,
    esc_label,
    go_float,
    group_by_shard,
    info_labels,
    school_values,
    shortfall_samples,
    value_of,
)
from edugap.collector.serving.shards import OUTSIDE, resolve, shard_of
from edugap.protocol.messages import utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_UNKNOWN = "\x00unknown"  # the cache key of every shard the snapshot does not have


def _header(name: str, help_text: str, kind: str = "gauge") -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


# --- the rendered text -----------------------------------------------------------------------


def _render_schools(schools: list[SchoolStatus], errors: ErrorCount, detail: bool) -> list[str]:
    """One text chunk per school family (in FAMILY order) for one province's schools."""
    base = [
        f'province="{esc_label(s.province)}",school_id="{esc_label(s.school_id)}"' for s in schools
    ]
    chunks: list[str] = []
    for metric in school_values(detail):
        lines = []
        for school, labels in zip(schools, base, strict=True):
            v = value_of(metric.get, school, errors)
            if v is not None:
                lines.append(f"{metric.name}{{{labels}}} {go_float(v)}\n")
        chunks.append("".join(lines))
    conn, mon = SCHOOL_STATES[0][0], SCHOOL_STATES[1][0]
    chunks.append(
        "".join(
            f'{conn}{{class="{s.connectivity}",{b}}} 1.0\n'
            for s, b in zip(schools, base, strict=True)
        )
    )
    chunks.append(
        "".join(
            f'{mon}{{{b},status="{s.monitoring}"}} 1.0\n'
            for s, b in zip(schools, base, strict=True)
        )
    )
    short = SCHOOL_SHORTFALL[0]
    lines = []
    for school, labels in zip(schools, base, strict=True):
        for kind, flag in shortfall_samples(school, detail):
            lines.append(f'{short}{{kind="{kind}",{labels}}} {flag}\n')
    chunks.append("".join(lines))
    chunks.append("".join(_info_line(s) for s in schools))
    return chunks


def _info_line(school: SchoolStatus) -> str:
    pairs = zip(SCHOOL_INFO[2], info_labels(school), strict=True)
    labels = ",".join(f'{name}="{esc_label(value)}"' for name, value in pairs)
    return f"{SCHOOL_INFO[0]}{{{labels}}} 1.0\n"


def _render_province(area: AreaSummary | None, errors: ErrorCount) -> list[str]:
    """One chunk per province family for one province ('' chunks when it has no summary)."""
    if area is None:
        return [""] * (len(PROVINCE_VALUES) + len(PROVINCE_COUNTS))
    p = f'province="{esc_label(area.province)}"'
    chunks = []
    for metric in PROVINCE_VALUES:
        v = value_of(metric.get, area, errors)
        chunks.append("" if v is None else f"{metric.name}{{{p}}} {go_float(v)}\n")
    for name, _help, label, attr, values in PROVINCE_COUNTS:
        counts: dict[str, int] = getattr(area, attr)
        pairs = [(f'{label}="{v}",{p}' if label < "province" else f'{p},{label}="{v}"', v)
                 for v in values]  # fmt: skip
        chunks.append(
            "".join(f"{name}{{{lab}}} {go_float(counts.get(v, 0))}\n" for lab, v in pairs)
        )
    return chunks


def _school_headers(detail: bool) -> list[str]:
    heads = [_header(m.name, m.help) for m in school_values(detail)]
    heads += [_header(name, help_text) for name, help_text, _ in SCHOOL_STATES]
    heads.append(_header(*SCHOOL_SHORTFALL))
    heads.append(_header(SCHOOL_INFO[0], SCHOOL_INFO[1]))
    return heads


def _province_headers() -> list[str]:
    heads = [_header(m.name, m.help) for m in PROVINCE_VALUES]
    return heads + [_header(name, help_text) for name, help_text, *_ in PROVINCE_COUNTS]


def _encode(chunks: list[str]) -> list[bytes]:
    return [chunk.encode() for chunk in chunks]


SCHOOL_HEADERS = {detail: _encode(_school_headers(detail)) for detail in (False, True)}
PROVINCE_HEADERS = _encode(_province_headers())


@dataclass(frozen=True, slots=True)
class Rendered:
    """The text of one snapshot, cut per family and per shard (serving/shards.py)."""

    snapshot: Snapshot
    schools: dict[str, list[bytes]]  # shard -> chunk per school family
    provinces: dict[str, list[bytes]]  # shard -> chunk per province family
    seconds: float
    detail: bool = False  # metrics.school_detail: every per-school family
    gzipped: dict[str, bytes] = field(default_factory=dict)  # shard -> compressed text

    def school_text(self, only: str | None) -> Iterator[bytes]:
        """Family-major text of every shard (only=None) or of one shard."""
        return _family_major(SCHOOL_HEADERS[self.detail], self.schools, only)

    def province_text(self, only: str | None) -> Iterator[bytes]:
        return _family_major(PROVINCE_HEADERS, self.provinces, only)

    def text(self, only: str | None) -> Iterator[bytes]:
        """School then province families, of every shard (only=None) or of one."""
        return chain(self.school_text(only), self.province_text(only))


def _family_major(
    headers: list[bytes], chunks_by_shard: dict[str, list[bytes]], only: str | None
) -> Iterator[bytes]:
    for i, head in enumerate(headers):
        yield head
        if only is None:
            yield from (chunks[i] for chunks in chunks_by_shard.values())
        elif only in chunks_by_shard:
            yield chunks_by_shard[only][i]


def render_snapshot(snapshot: Snapshot, errors: ErrorCount, detail: bool = False) -> Rendered:
    """Render every school and province series of a snapshot, per shard."""
    started = time.perf_counter()
    groups = group_by_shard(snapshot)
    # stored encoded, so a cached scrape is only a join of bytes
    schools = {
        p: _encode(_render_schools(members, errors, detail)) for p, members in groups.items()
    }
    by_shard: dict[str, list[list[str]]] = {}
    for area in areas_in_shard_order(snapshot):
        by_shard.setdefault(shard_of(area.province), []).append(_render_province(area, errors))
    # a shard normally holds one province; joined per family when the registry spelt it twice
    provinces = {p: _encode(["".join(c) for c in zip(*chunks, strict=True)])
                 for p, chunks in by_shard.items()}  # fmt: skip
    return Rendered(snapshot, schools, provinces, time.perf_counter() - started, detail)


# --- the endpoint -------------------------------------------------------------------------------


class Exposition:
    """What /metrics serves: cached snapshot text plus live health; one registry for both."""

    def __init__(
        self,
        holder: SnapshotHolder,
        stats: IngestStats,
        clock: Callable[[], datetime] = utcnow,
        school_detail: bool = False,
    ) -> None:
        self.holder = holder
        self.school_detail = school_detail
        self.errors = ErrorCount()
        self.snapshots = SnapshotCollector(holder, self.errors, school_detail)
        self.health = HealthCollector(holder, stats, self.errors, clock)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.snapshots)
        self.registry.register(self.health)
        self.http = HttpCollector()  # the HTTP server's own figures, once it runs
        self.registry.register(self.http)
        self.health_registry = CollectorRegistry(auto_describe=False)
        self.health_registry.register(self.health)
        self.health_registry.register(self.http)
        self._rendered: Rendered | None = None
        self._lock = threading.Lock()

    def prepare(self) -> Rendered | None:
        """The rendered text of the current snapshot, rendering it once if it is new."""
        snapshot = self.holder.current
        if snapshot is None:
            return None
        rendered = self._rendered
        if rendered is not None and rendered.snapshot is snapshot:
            return rendered
        with self._lock:  # one render per snapshot even when scrapes arrive together
            if self._rendered is None or self._rendered.snapshot is not snapshot:
                try:
                    self._rendered = render_snapshot(snapshot, self.errors, self.school_detail)
                except Exception:
                    self.errors.add()
                    log.exception("rendering metrics failed; serving the previous text")
                    return self._rendered
                self.health.render_seconds = self._rendered.seconds
            return self._rendered

    def provinces(self) -> list[str]:
        """The province shards the current snapshot has schools or totals in."""
        rendered = self.prepare()
        if rendered is None:
            return []
        return sorted((set(rendered.schools) | set(rendered.provinces)) - {OUTSIDE})

    def gzipped_shard(self, province: str) -> bytes:
        """One province's shard, gzip-compressed once per snapshot.

        A shard holds only snapshot series, so its compressed form can be cached like its
        text; at national scale that is ~10x less traffic per scrape for one compression.
        """
        rendered = self.prepare()
        if rendered is None:
            return gzip.compress(b"".join(self.text(province=province)), 6, mtime=0)
        # Only a shard the snapshot has gets its own entry: any other name is the same empty
        # text (headers only), cached once, so made-up names cannot grow the cache.
        shard = _shard(province)
        key = shard if shard in rendered.schools or shard in rendered.provinces else _UNKNOWN
        found = rendered.gzipped.get(key)
        if found is None:
            text = b"".join(rendered.text(key))
            found = rendered.gzipped[key] = gzip.compress(text, 6, mtime=0)
        return found

    def text(self, province: str | None = None, collector: bool = False) -> Iterator[bytes]:
        """Everything (default), one province's shard (any spelling of its name: see
        serving/shards.py), or (collector=True) the collector's own health plus the schools and
        totals outside the 34 provinces. Yields UTF-8 pieces."""
        rendered = self.prepare()
        pieces: Iterable[bytes]
        empty = chain(SCHOOL_HEADERS[self.school_detail], PROVINCE_HEADERS)
        if collector:
            yield generate_latest(self.health_registry)
            pieces = rendered.text(OUTSIDE) if rendered else empty
        elif rendered:
            pieces = rendered.text(None if province is None else _shard(province))
        else:
            pieces = empty
        yield from _batched(pieces)
        if not collector and province is None:
            yield generate_latest(self.health_registry)


def _shard(province: str) -> str:
    """The shard a ?province= names, or a key no shard has (a name that is no province)."""
    return resolve(province) or _UNKNOWN


def _batched(pieces: Iterable[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Join pieces into ~1 MiB blocks, so a big scrape streams in few writes."""
    block: list[bytes] = []
    length = 0
    for piece in pieces:
        block.append(piece)
        length += len(piece)
        if length >= size:
            yield b"".join(block)
            block, length = [], 0
    if block:
        yield b"".join(block)
