"""Shortage exports: one row per school, measured need first, in a format registered by name.

Each format is one module here exposing `EXPORTER`, an object with one method,
`write(rows, out, options) -> int`; adding a format is one module and one line in FORMATS. The
CLI (`edugap export shortages`) and the HTTP API both call `write_shortages`; the columns and
rows are in `columns`, the filters in `select`; `xlsx_rows` writes XLSX sheets a row of XML at
a time. `mapimage` is the other output for reports: the coverage map as an image (`edugap map`).

May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.registry`
(place names), `edugap.collector.safetext` (formula neutralisation); never ingest, a store
backend, serving or the demo.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import BinaryIO, Protocol
from zoneinfo import ZoneInfo

from edugap.collector.export.columns import COLUMN, COLUMNS, Cell, Row, headers, record, row
from edugap.collector.export.select import (
    KIND_ANY,
    ExportError,
    Filters,
    UnknownPlace,
    filter_schools,
    match_places,
)
from edugap.collector.model import SchoolStatus, Snapshot
from edugap.collector.registry.places import key, province_key

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.registry",
    "edugap.collector.safetext",
)

__all__ = [
    "COLUMN",
    "COLUMNS",
    "DIALECTS",
    "FORMATS",
    "KIND_ANY",
    "LANGUAGES",
    "Cell",
    "ExportError",
    "ExportOptions",
    "Filters",
    "Row",
    "UnknownPlace",
    "download_name",
    "exporter",
    "filter_schools",
    "headers",
    "match_places",
    "record",
    "row",
    "write_shortages",
]

LANGUAGES = ("vi", "en")  # XLSX headers and sheet names
DIALECTS = ("standard", "excel-vn")  # CSV: "," and "." / ";" and "," (Excel on Vietnamese)


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """How a file is written: what each format makes of it, the others ignore."""

    lang: str = "vi"  # XLSX headers and sheet names: "vi" or "en"
    dialect: str = "standard"  # CSV: "standard" or "excel-vn"
    timezone: str = "UTC"  # XLSX shows times in it; write_shortages sets the snapshot's zone


class Exporter(Protocol):
    """Writes rows (aligned with COLUMNS) to a binary stream; returns how many were written."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int: ...


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


def exporter(fmt: str) -> Exporter:
    """The exporter registered as `fmt`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    found: Exporter = importlib.import_module(FORMATS[fmt].module).EXPORTER
    return found


def check_options(options: ExportOptions) -> None:
    """ExportError naming a language or dialect that is not known."""
    if options.lang not in LANGUAGES:
        raise ExportError(f"unknown language {options.lang!r} (known: {', '.join(LANGUAGES)})")
    if options.dialect not in DIALECTS:
        raise ExportError(f"unknown CSV dialect {options.dialect!r} (known: {', '.join(DIALECTS)})")


def download_name(filters: Filters, fmt: str, snapshot: Snapshot) -> str:
    """A file name that says what the list holds and from when (the snapshot's day in the
    policy's time zone): shortages_cao-bang_computers_2026-03-02.xlsx, in ASCII so that every
    browser and file system keeps it."""
    day = snapshot.generated_at.astimezone(ZoneInfo(snapshot.timezone)).date()
    parts = ["shortages"]
    for f in fields(filters):
        value = getattr(filters, f.name)
        if value:
            named = province_key(value) if f.name == "province" else key(value)  # "TP HCM"
            slug = re.sub(r"[^0-9a-z]+", "-", named).strip("-")
            parts.append(slug[:40] or f.name)
    parts.append(day.isoformat())
    return "_".join(parts) + "." + FORMATS[fmt].extension


Progress = Callable[[int, int], None]  # (rows done, rows total)


def _with_progress(rows: Sequence[SchoolStatus], progress: Progress | None) -> Iterator[Row]:
    if progress is None:
        return map(row, rows)  # no Python loop of its own: this is every export's hot path
    return _reporting(rows, progress)


def _reporting(rows: Sequence[SchoolStatus], progress: Progress) -> Iterator[Row]:
    total = len(rows)
    step = max(1_000, min(10_000, total // 10))  # about ten lines of progress per export
    for start in range(0, total, step):
        yield from map(row, rows[start : start + step])
        progress(min(start + step, total), total)


def write_shortages(
    snapshot: Snapshot,
    fmt: str,
    out: BinaryIO,
    filters: Filters | None = None,
    progress: Progress | None = None,
    options: ExportOptions | None = None,
) -> int:
    """Write the filtered schools of `snapshot` as `fmt` to `out`; returns the row count.

    Raises ExportError (UnknownPlace when a filter names a place nobody knows) before writing
    anything."""
    chosen = exporter(fmt)
    opts = replace(options or ExportOptions(), timezone=snapshot.timezone)
    check_options(opts)
    schools = filter_schools(snapshot, filters)
    return chosen.write(_with_progress(schools, progress), out, opts)
