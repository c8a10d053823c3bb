"""The coverage map's data (/api/v1/map): every filtered school in a compact columnar form.

At 60,000 schools a row per school with repeated names was 4 MB of JSON. Here each column is
one array, names of places and levels are given once and referred to by index, classes and
statuses by their index in the listed enums, and shortfalls as a bit mask; the page rebuilds
the province and commune tables of the current filter from it. Gzipped, 60,000 schools are
well under 1 MB (bench/coverage_page.py measures it). Encoded and compressed bodies are kept
per snapshot, so the page's usual requests cost one encoding per snapshot.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from edugap.collector.export import Filters
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    SHORTFALL_KINDS,
    SchoolStatus,
    Snapshot,
)

_json = msgspec.json.Encoder()
CACHED_QUERIES = 16  # distinct filters kept per snapshot (the page's recent views)


def _coord(value: float | None) -> float | None:
    return None if value is None else round(value, 5)  # ~1 m


def map_payload(
    snapshot: Snapshot, schools: Sequence[SchoolStatus], time_zone: str
) -> dict[str, Any]:
    """The /api/v1/map document for `schools` (already filtered), ordered by place: neighbours
    share digits and place indexes, which gzip rewards (a fifth smaller at 60,000)."""
    places: dict[tuple[str, str], int] = {}
    levels: dict[str, int] = {}
    klass = {c: i for i, c in enumerate(CONNECTIVITY_CLASSES)}
    status = {m: i for i, m in enumerate(MONITORING_STATES)}
    bit = {k: 1 << i for i, k in enumerate(SHORTFALL_KINDS)}
    columns: dict[str, list[Any]] = {
        name: []
        for name in ("school_id", "lat", "lon", "connectivity", "monitoring", "place", "level",
                     "shortfalls", "bandwidth_gap_mbps", "computers_gap")
    }  # fmt: skip
    for s in sorted(schools, key=lambda s: (s.province, s.commune, s.school_id)):
        columns["school_id"].append(s.school_id)
        columns["lat"].append(_coord(s.lat))
        columns["lon"].append(_coord(s.lon))
        columns["connectivity"].append(klass[s.connectivity])
        columns["monitoring"].append(status[s.monitoring])
        columns["place"].append(places.setdefault((s.province, s.commune), len(places)))
        columns["level"].append(levels.setdefault(s.level, len(levels)))
        columns["shortfalls"].append(sum(bit.get(k, 0) for k in s.shortfalls))
        columns["bandwidth_gap_mbps"].append(round(s.bandwidth_gap_mbps, 1))
        columns["computers_gap"].append(s.computers_gap)
    return {
        "generated_at": snapshot.generated_at.isoformat(),
        "time_zone": time_zone,
        "total": len(schools),
        "classes": list(CONNECTIVITY_CLASSES),
        "monitoring_states": list(MONITORING_STATES),
        "shortfall_kinds": list(SHORTFALL_KINDS),
        "places": [list(p) for p in places],
        "levels": list(levels),
        "schools": columns,
    }


class MapCache:
    """Encoded (and gzipped) map bodies of the current snapshot, by filter."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._bodies: dict[tuple[Filters, bool], bytes] = {}
        self._lock = threading.Lock()

    def body(
        self,
        snapshot: Snapshot,
        filters: Filters,
        gzipped: bool,
        build: Callable[[], dict[str, Any]],
    ) -> bytes:
        """The body for `filters`, encoding it with `build()` the first time."""
        key = (filters, gzipped)
        with self._lock:
            if self._snapshot is not snapshot:
                self._snapshot, self._bodies = snapshot, {}
            found = self._bodies.get(key)
        if found is not None:
            return found
        plain = self._bodies.get((filters, False)) or _json.encode(build())
        body = gzip.compress(plain, 6, mtime=0) if gzipped else plain
        with self._lock:
            if self._snapshot is snapshot:
                if len(self._bodies) >= CACHED_QUERIES:
                    self._bodies.pop(next(iter(self._bodies)))
                self._bodies[key] = body
                self._bodies.setdefault((filters, False), plain)
        return body
