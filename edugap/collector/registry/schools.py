"""School registry import from CSV, TSV or XLSX: each bad row is reported with its line and reason.

The file is read as offices write it (`table`: encoding, delimiter, decimal comma, XLSX). A
missing required column, a column named twice or a quote never closed stops the import
(RegistryError). Province and commune names are matched against the 2025 official list; a
match is stored under its official spelling ("ha noi" -> "Thành phố Hà Nội") so areas group
together. A province of before the 2025 merger is stored under its successor with a note; a
province that matches nothing is refused (with the closest names) unless the caller allows
unknown provinces, then kept as written with a warning. An unknown commune is a warning.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TextIO

from edugap.collector.model import School
from edugap.collector.registry.places import Places, default_places
from edugap.collector.registry.table import Table, TableError, number, read_table, whole
from edugap.collector.safetext import neutralise, unneutralise
from edugap.protocol.messages import ID_PATTERN

REQUIRED = ("school_id", "name", "province", "commune", "level", "lat", "lon", "students")
OPTIONAL = ("computers_required", "contracted_mbps")
# Mainland Vietnam spans about 8.2-23.4 N and 102.1-109.5 E; the east edge reaches 117.5 E
# so that schools of the Trường Sa special zone (Spratly islands, Khánh Hòa) are accepted.
LAT_RANGE = (7.5, 23.5)
LON_RANGE = (102.0, 117.5)
_ID = re.compile(ID_PATTERN)


class RegistryError(ValueError):
    """The file as a whole cannot be imported (encoding, header)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One bad row (error: not imported), doubtful row (warning: imported) or a note on what
    was done to an imported row."""

    line: int
    message: str
    unit: str = "line"  # "row" in a spreadsheet

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.message}"


@dataclass(slots=True)
class ParseResult:
    """Good rows, what was wrong with the others, and how the file was read."""

    schools: list[School] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)
    notes: list[RowProblem] = field(default_factory=list)
    found: str = ""  # "UTF-16 with BOM, tab-separated", "XLSX, sheet 'Trường'"


def _number(row: dict[str, str], column: str, decimal_comma: bool) -> float:
    text = row[column]
    try:
        value = number(text, decimal_comma)
    except ValueError:
        hint = (
            " (in a ','-separated file use a dot as the decimal mark, or separate fields "
            "with ';')"
            if "," in text and not decimal_comma
            else ""
        )
        raise ValueError(f"{column} {text!r} is not a number{hint}") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {text!r} is not a finite number")
    return value


def _count(row: dict[str, str], column: str, decimal_comma: bool) -> int:
    text = row[column]
    try:
        value = whole(text, decimal_comma)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{column} {text!r} is negative")
    return value


def _school(row: dict[str, str], decimal_comma: bool = False) -> School:
    """One row -> School, or ValueError naming the column and value."""
    for column in REQUIRED:
        if not row.get(column):
            raise ValueError(f"missing {column}")
    school_id = row["school_id"]
    if not _ID.match(school_id):
        raise ValueError(
            f"school_id {school_id!r} is not 1-64 letters, digits, '-' or '_' (wire protocol v1)"
        )
    lat, lon = _number(row, "lat", decimal_comma), _number(row, "lon", decimal_comma)
    lat_ok = LAT_RANGE[0] <= lat <= LAT_RANGE[1]
    lon_ok = LON_RANGE[0] <= lon <= LON_RANGE[1]
    if not (lat_ok and lon_ok):
        swapped = LAT_RANGE[0] <= lon <= LAT_RANGE[1] and LON_RANGE[0] <= lat <= LON_RANGE[1]
        hint = " (lat and lon look swapped)" if swapped else ""
        raise ValueError(
            f"lat {row['lat']}, lon {row['lon']} is outside Vietnam "
            f"(lat {LAT_RANGE[0]}..{LAT_RANGE[1]}, lon {LON_RANGE[0]}..{LON_RANGE[1]}){hint}"
        )
    computers = None
    if row.get("computers_required"):
        computers = _count(row, "computers_required", decimal_comma)
    contracted = None
    if row.get("contracted_mbps"):
        contracted = _number(row, "contracted_mbps", decimal_comma)
        if contracted <= 0:
            raise ValueError(f"contracted_mbps {row['contracted_mbps']!r} must be above 0")
    return School(
        school_id=school_id,
        name=row["name"],
        province=row["province"],
        commune=row["commune"],
        level=row["level"],
        lat=lat,
        lon=lon,
        students=_count(row, "students", decimal_comma),
        computers_required=computers,
        contracted_mbps=contracted,
    )


@dataclass(slots=True)
class _Reading:
    """One file's import in progress: where rows' problems go."""

    places: Places
    allow_unknown_province: bool
    unit: str
    result: ParseResult

    def problem(self, kind: list[RowProblem], line: int, message: str) -> None:
        kind.append(RowProblem(line, message, self.unit))

    def place(self, school: School, line: int) -> School | None:
        """The school with official place names where they match; None when its province is
        refused (the error is recorded)."""
        r = self.result
        province = self.places.province(school.province)
        if province is None:
            succession = self.places.succession(school.province)
            if succession is not None:
                province = succession.province
                self.problem(r.notes, line, f"province {school.province!r}: {succession.note}; "
                             f"imported under {province.name}")  # fmt: skip
            elif self.allow_unknown_province:
                self.problem(r.warnings, line, f"province {school.province!r} is not one of the "
                             "34 provinces of 2025; kept as written "
                             "(--allow-unknown-province)")  # fmt: skip
                return school
            else:
                close = self.places.suggest_province(school.province)
                hint = f"closest: {', '.join(close)}" if close else "no province name is close"
                self.problem(r.errors, line, f"province {school.province!r} is not one of the "
                             f"34 provinces of 2025 ({hint}); correct it, or import it as "
                             "written with --allow-unknown-province")  # fmt: skip
                return None
        commune = province.commune(school.commune)
        if commune is None:
            self.problem(r.warnings, line, f"commune {school.commune!r} is not a commune of "
                         f"{province.name} (2025 list), or is ambiguous without its "
                         "accents")  # fmt: skip
            return _replace(school, province.name, school.commune)
        return _replace(school, province.name, commune.name)


def _replace(school: School, province: str, commune: str) -> School:
    if school.province == province and school.commune == commune:
        return school
    return replace(school, province=province, commune=commune)


def read(
    data: bytes,
    source: str = "registry.csv",
    places: Places | None = None,
    *,
    allow_unknown_province: bool = False,
) -> ParseResult:
    """Parse a registry file's bytes (CSV, TSV or XLSX; `source` is its name). Raises
    RegistryError when the file as a whole cannot be read or lacks a required column."""
    try:
        table = read_table(data, source, wanted=REQUIRED)
    except TableError as e:
        raise RegistryError(str(e)) from None
    return parse_table(table, places, allow_unknown_province=allow_unknown_province)


def parse(
    text: str, places: Places | None = None, *, allow_unknown_province: bool = False
) -> ParseResult:
    """Parse registry CSV text (see `read`)."""
    return read(text.encode("utf-8"), "registry.csv", places,
                allow_unknown_province=allow_unknown_province)  # fmt: skip


def parse_table(
    table: Table, places: Places | None = None, *, allow_unknown_province: bool = False
) -> ParseResult:
    """Schools from a read table, each bad row an error naming its line."""
    columns = table.header
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise RegistryError(
            f"missing required column {', '.join(repr(m) for m in missing)} "
            f"(read as {table.found}; the header has: {', '.join(c for c in columns if c)})"
        )
    result = ParseResult(found=table.found)
    reading = _Reading(places or default_places(), allow_unknown_province, table.unit, result)
    unknown = [c for c in columns if c and c not in REQUIRED + OPTIONAL]
    if unknown:
        reading.problem(result.warnings, 1, f"column(s) {', '.join(unknown)} ignored")
    for line, message in table.errors:
        reading.problem(result.errors, line, message)
    first_line: dict[str, int] = {}
    width = len(columns)
    while width and not columns[width - 1]:
        width -= 1  # empty header cells at the end (a spreadsheet's stray columns)
    for start, record in table.rows:
        if not any(v.strip() for v in record):
            continue
        if any(v.strip() for v in record[width:]):
            reading.problem(result.errors, start,
                            f"{len(record)} fields but the header has {width}")  # fmt: skip
            continue
        # a cell our own CSVs neutralised ('=...) is read as what it was
        row = {c: unneutralise(v.strip()) for c, v in zip(columns, record, strict=False) if c}
        try:
            school = _school(row, table.decimal_comma)
        except ValueError as e:
            reading.problem(result.errors, start, str(e))
            continue
        if school.school_id in first_line:
            reading.problem(result.errors, start, f"duplicate school_id {school.school_id!r} "
                            f"(first on {table.unit} {first_line[school.school_id]}); this row "
                            "is skipped")  # fmt: skip
            continue
        placed = reading.place(school, start)
        if placed is not None:
            first_line[school.school_id] = start
            result.schools.append(placed)
    result.errors.sort(key=lambda p: p.line)
    return result


def write_csv(out: TextIO, schools: Iterable[School]) -> int:
    """Write registry rows as CSV with the import's columns; returns the number of rows.

    Text that starts like a formula is neutralised for spreadsheets; `parse` reads it back."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUIRED + OPTIONAL)
    n = 0
    for s in schools:
        writer.writerow(
            [
                neutralise(s.school_id),
                neutralise(s.name),
                neutralise(s.province),
                neutralise(s.commune),
                neutralise(s.level),
                repr(s.lat),
                repr(s.lon),
                s.students,
                "" if s.computers_required is None else s.computers_required,
                "" if s.contracted_mbps is None else repr(s.contracted_mbps),
            ]
        )
        n += 1
    return n


def to_csv(schools: Iterable[School]) -> str:
    """Registry rows as CSV with the import's columns (what `parse` reads back)."""
    out = io.StringIO()
    write_csv(out, schools)
    return out.getvalue()
