"""School registry import from CSV: each bad row is reported with its line and reason.

A missing required column stops the import (RegistryError naming the column). Province and
commune names are matched against the 2025 official list; a match is stored under its official
spelling ("ha noi" -> "Thành phố Hà Nội") so areas group together, an unknown name is kept as
written and warned about.
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
    """One bad row (error: not imported) or doubtful row (warning: imported)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ParseResult:
    """Good rows, and what was wrong with the others."""

    schools: list[School] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)


def _number(row: dict[str, str], column: str) -> float:
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        hint = " (use a dot as the decimal separator)" if "," in text else ""
        raise ValueError(f"{column} {text!r} is not a number{hint}") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {text!r} is not a finite number")
    return value


def _count(row: dict[str, str], column: str) -> int:
    text = row[column]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{column} {text!r} is negative")
    return value


def _school(row: dict[str, str]) -> School:
    """One row -> School, or ValueError naming the column and value."""
    for column in REQUIRED:
        if not row.get(column):
            raise ValueError(f"missing {column}")
    school_id = row["school_id"]
    if not _ID.match(school_id):
        raise ValueError(
            f"school_id {school_id!r} is not 1-64 letters, digits, '-' or '_' (wire protocol v1)"
        )
    lat, lon = _number(row, "lat"), _number(row, "lon")
    lat_ok = LAT_RANGE[0] <= lat <= LAT_RANGE[1]
    lon_ok = LON_RANGE[0] <= lon <= LON_RANGE[1]
    if not (lat_ok and lon_ok):
        swapped = LAT_RANGE[0] <= lon <= LAT_RANGE[1] and LON_RANGE[0] <= lat <= LON_RANGE[1]
        hint = " (lat and lon look swapped)" if swapped else ""
        raise ValueError(
            f"lat {row['lat']}, lon {row['lon']} is outside Vietnam "
            f"(lat {LAT_RANGE[0]}..{LAT_RANGE[1]}, lon {LON_RANGE[0]}..{LON_RANGE[1]}){hint}"
        )
    computers = _count(row, "computers_required") if row.get("computers_required") else None
    contracted = None
    if row.get("contracted_mbps"):
        contracted = _number(row, "contracted_mbps")
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
        students=_count(row, "students"),
        computers_required=computers,
        contracted_mbps=contracted,
    )


def _place(school: School, places: Places, line: int, warnings: list[RowProblem]) -> School:
    """The school with official place names where they match; warn where they do not."""
    province = places.province(school.province)
    if province is None:
        warnings.append(
            RowProblem(line, f"province {school.province!r} is not one of the 34 provinces of 2025")
        )
        return school
    commune = province.commune(school.commune)
    if commune is None:
        warnings.append(
            RowProblem(
                line,
                f"commune {school.commune!r} is not a commune of {province.name} (2025 list), "
                "or is ambiguous without its accents",
            )
        )
        return _replace(school, province.name, school.commune)
    return _replace(school, province.name, commune.name)


def _replace(school: School, province: str, commune: str) -> School:
    if school.province == province and school.commune == commune:
        return school
    return replace(school, province=province, commune=commune)


def decode(data: bytes, source: str = "file") -> str:
    """UTF-8 text, with or without a byte-order mark; RegistryError names the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RegistryError(
            f"{source} line {line}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8 CSV"
        ) from None


def parse(text: str, places: Places | None = None) -> ParseResult:
    """Parse registry CSV text; raises RegistryError when the header lacks a required column."""
    places = places or default_places()
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise RegistryError("the file is empty: expected a header line with " + ", ".join(REQUIRED))
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise RegistryError(
            f"missing required column {', '.join(repr(m) for m in missing)} "
            f"(the header has: {', '.join(columns)})"
        )
    result = ParseResult()
    unknown = [c for c in columns if c and c not in REQUIRED + OPTIONAL]
    if unknown:
        result.warnings.append(RowProblem(1, f"column(s) {', '.join(unknown)} ignored"))
    first_line: dict[str, int] = {}
    line = reader.line_num
    for record in reader:
        start, line = line + 1, reader.line_num  # a quoted field may span lines
        if not any(v.strip() for v in record):
            continue
        if len(record) > len(columns):
            result.errors.append(
                RowProblem(start, f"{len(record)} fields but the header has {len(columns)}")
            )
            continue
        # a cell our own CSVs neutralised ('=...) is read as what it was
        row = {c: unneutralise(v.strip()) for c, v in zip(columns, record, strict=False)}
        try:
            school = _school(row)
        except ValueError as e:
            result.errors.append(RowProblem(start, str(e)))
            continue
        if school.school_id in first_line:
            result.errors.append(
                RowProblem(
                    start,
                    f"duplicate school_id {school.school_id!r} (first on line "
                    f"{first_line[school.school_id]}); this row is skipped",
                )
            )
            continue
        first_line[school.school_id] = start
        result.schools.append(_place(school, places, start, result.warnings))
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
