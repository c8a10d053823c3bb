"""Shortage exports: one row per school, sorted by priority, in a format registered by name.

Each format is one module here exposing `EXPORTER`, an object with one method,
`write(rows, out) -> int`; adding a format is one module and one line in FORMATS. The CLI
(`edugap export shortages`) and the HTTP API both call `write_shortages`.

May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.registry`
(place names), `edugap.collector.safetext` (formula neutralisation); never ingest, a store
backend, serving or the demo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, TypeVar

from edugap.collector.model import SHORTFALL_KINDS, SchoolStatus, Snapshot
from edugap.collector.registry.places import key, province_key

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.registry",
    "edugap.collector.safetext",
)

Cell = str | int | float | bool | datetime | None
Row = tuple[Cell, ...]

#: The columns of every format, in order.
COLUMNS: tuple[str, ...] = (
    "school_id",
    "name",
    "province",
    "commune",
    "level",
    "students",
    "lat",
    "lon",
    "registered",
    "connectivity",
    "download_mbps",
    "upload_mbps",
    "latency_ms",
    "tests_7d",
    "required_mbps",
    "bandwidth_gap_mbps",
    "uptime_pct",
    "contracted_mbps",
    "isp_compliant",
    "monitoring",
    "last_report",
    "devices_reporting",
    "devices_clock_off",
    "computers_usable",
    "computers_required",
    "computers_gap",
    "os_out_of_support",
    "shortfalls",
    "priority",
    "speedtest",
)
COLUMN = {name: i for i, name in enumerate(COLUMNS)}
KIND_ANY = "any"  # filter: at least one shortfall


class Exporter(Protocol):
    """Writes rows (aligned with COLUMNS) to a binary stream; returns how many were written."""

    def write(self, rows: Iterable[Row], out: BinaryIO) -> int: ...


@dataclass(frozen=True, slots=True)
class Format:
    """A registered format: its module, and what an HTTP response or a file name needs."""

    name: str
    module: str
    media_type: str
    extension: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("csv", "edugap.collector.export.csv_format", "text/csv; charset=utf-8", "csv"),
        Format(
            "xlsx",
            "edugap.collector.export.xlsx_format",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
        Format(
            "geojson",
            "edugap.collector.export.geojson_format",
            "application/geo+json",
            "geojson",
        ),
        Format("json", "edugap.collector.export.json_format", "application/json", "json"),
    )
}


class ExportError(ValueError):
    """An unknown format or filter value; the message names it and the accepted values."""


def exporter(fmt: str) -> Exporter:
    """The exporter registered as `fmt`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    found: Exporter = importlib.import_module(FORMATS[fmt].module).EXPORTER
    return found


@dataclass(frozen=True, slots=True)
class Filters:
    """Which schools to export; None matches everything."""

    province: str | None = None
    commune: str | None = None
    level: str | None = None
    kind: str | None = None  # a SHORTFALL_KINDS member, or "any"


class Placed(Protocol):
    """Anything with a place and a level: a registry School or a SchoolStatus."""

    @property
    def province(self) -> str: ...
    @property
    def commune(self) -> str: ...
    @property
    def level(self) -> str: ...


P = TypeVar("P", bound=Placed)


def match_places(
    items: Iterable[P],
    province: str | None = None,
    commune: str | None = None,
    level: str | None = None,
) -> list[P]:
    """Items in every given place, in their order.

    Province and commune compare accent-, case- and prefix-insensitively ("ha noi" matches
    "Thành phố Hà Nội"); level compares case-insensitively.
    """
    p = province_key(province) if province else None
    c = key(commune) if commune else None
    lv = level.casefold() if level else None
    return [
        s
        for s in items
        if (p is None or key(s.province) == p)
        and (c is None or key(s.commune) == c)
        and (lv is None or s.level.casefold() == lv)
    ]


def filter_schools(
    snapshot: Snapshot,
    province: str | None = None,
    commune: str | None = None,
    level: str | None = None,
    kind: str | None = None,
) -> list[SchoolStatus]:
    """Schools matching every given filter (see match_places), highest priority first; kind
    is a shortfall kind or "any"."""
    if kind is not None and kind != KIND_ANY and kind not in SHORTFALL_KINDS:
        raise ExportError(
            f"unknown shortfall kind {kind!r} (known: {', '.join((*SHORTFALL_KINDS, KIND_ANY))})"
        )
    chosen = snapshot.by_priority()
    if province or commune or level:
        chosen = match_places(chosen, province, commune, level)
    if kind:
        any_kind = kind == KIND_ANY
        chosen = [s for s in chosen if (bool(s.shortfalls) if any_kind else kind in s.shortfalls)]
    return chosen


def row(s: SchoolStatus) -> Row:
    """One school as a row aligned with COLUMNS (rates rounded to 0.01)."""
    # inline rounding: this runs once per school per export
    down, up, lat, up_pct = s.download_mbps, s.upload_mbps, s.latency_ms, s.uptime_pct
    return (
        s.school_id,
        s.name,
        s.province,
        s.commune,
        s.level,
        s.students,
        s.lat,
        s.lon,
        s.registered,
        s.connectivity,
        None if down is None else round(down, 2),
        None if up is None else round(up, 2),
        None if lat is None else round(lat, 2),
        s.tests_7d,
        None if s.required_mbps is None else round(s.required_mbps, 2),
        round(s.bandwidth_gap_mbps, 2),
        None if up_pct is None else round(up_pct, 2),
        s.contracted_mbps,
        s.isp_compliant,
        s.monitoring,
        s.last_report,
        s.devices_reporting,
        s.devices_clock_off,
        s.computers_usable,
        s.computers_required,
        s.computers_gap,
        s.os_out_of_support,
        ";".join(s.shortfalls),
        s.priority,
        s.speedtest,
    )


Progress = Callable[[int, int], None]  # (rows done, rows total)


def _with_progress(rows: Sequence[SchoolStatus], progress: Progress | None) -> Iterator[Row]:
    total = len(rows)
    step = max(1_000, min(10_000, total // 10))  # about ten lines of progress per export
    for i, s in enumerate(rows, 1):
        yield row(s)
        if progress is not None and (i % step == 0 or i == total):
            progress(i, total)


def write_shortages(
    snapshot: Snapshot,
    fmt: str,
    out: BinaryIO,
    filters: Filters | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the filtered schools of `snapshot` as `fmt` to `out`; returns the row count."""
    f = filters or Filters()
    chosen = exporter(fmt)
    schools = filter_schools(snapshot, f.province, f.commune, f.level, f.kind)
    return chosen.write(_with_progress(schools, progress), out)
