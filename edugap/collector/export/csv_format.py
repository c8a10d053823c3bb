"""CSV: UTF-8 with a byte-order mark (so Excel shows Vietnamese), formula-like text neutralised.

Two dialects: "standard" (`,` between fields, `.` as the decimal mark: what programs read) and
"excel-vn" (`;` and `,`: what Excel and LibreOffice expect on Vietnamese regional settings,
where a standard file puts every field in one column or turns decimals into text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from edugap.collector.export import COLUMN, COLUMNS, Cell, ExportOptions, Row
from edugap.collector.safetext import FORMULA_PREFIXES, neutralise

# Cells are converted by column, not by inspecting every value: the rows come from
# edugap.collector.export.row(), whose column types are fixed, and this is the export's hot loop.
# Only free text can start like a formula: connectivity, monitoring and shortfalls come from
# fixed vocabularies (a test checks every column that can hold free text is neutralised).
_TEXT = tuple(COLUMN[c] for c in ("school_id", "name", "province", "commune", "level"))
_BOOL = (COLUMN["registered"], COLUMN["isp_compliant"])
_TIME = COLUMN["last_report"]
_KINDS = COLUMN["shortfalls"]
_FIRST = frozenset(p[0] for p in FORMULA_PREFIXES)
_ZERO = timedelta(0)


def utc_text(value: datetime) -> str:
    """RFC 3339 UTC, whole seconds: 2026-11-25T11:00:00Z."""
    if value.tzinfo is not UTC and value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def text_cell(value: Cell) -> str | int | float:
    """Any cell as CSV writes it: numbers as numbers, text neutralised, times in UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, tuple):
        return ";".join(value)
    return value


def _cells(rows: Iterable[Row]) -> Iterator[list[Cell]]:
    text, first, reg, isp, at = _TEXT, _FIRST, _BOOL[0], _BOOL[1], _TIME  # locals: hot loop
    kinds = _KINDS
    for r in rows:
        cells = list(r)
        for i in text:
            v = cells[i]
            if v and v[0] in first:  # type: ignore[index]
                cells[i] = "'" + v  # type: ignore[operator]
        cells[reg] = "true" if cells[reg] else "false"
        v = cells[isp]
        if v is not None:
            cells[isp] = "true" if v else "false"
        t = cells[at]
        if t is not None:
            cells[at] = utc_text(t)  # type: ignore[arg-type]
        cells[kinds] = ";".join(cells[kinds])  # type: ignore[arg-type]
        yield cells  # None is written as an empty cell by csv itself


def _decimal_comma(rows: Iterable[list[Cell]]) -> Iterator[list[Cell]]:
    """Floats with a decimal comma, for the excel-vn dialect (text never contains a float)."""
    for cells in rows:
        yield [str(v).replace(".", ",") if type(v) is float else v for v in cells]


class CsvExporter:
    """One header line with COLUMNS, then one line per school."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int:
        text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
        count = 0
        vietnamese = options.dialect == "excel-vn"

        def counted() -> Iterator[list[Cell]]:
            nonlocal count
            cells = _cells(rows)
            for line in _decimal_comma(cells) if vietnamese else cells:
                count += 1
                yield line

        try:
            writer = csv.writer(text, delimiter=";" if vietnamese else ",", lineterminator="\r\n")
            writer.writerow(COLUMNS)
            writer.writerows(counted())
            text.flush()
        finally:
            text.detach()  # leave `out` open for the caller
        return count


EXPORTER = CsvExporter()
