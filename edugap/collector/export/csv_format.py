"""CSV: UTF-8 with a byte-order mark (so Excel shows Vietnamese), formula-like text neutralised.

Two dialects: "standard" (`,` between fields, `.` as the decimal mark: what programs read) and
"excel-vn" (`;` and `,`: what Excel and LibreOffice expect on Vietnamese regional settings,
where a standard file puts every field in one column or turns decimals into text).
"""

from __future__ import annotations

import csv
import io
import re
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
# free text that a standard line cannot hold as it is: a formula-like start, or a character
# that makes CSV quote the field (what csv.writer's QUOTE_MINIMAL quotes with "," and "\r\n")
_CAREFUL = re.compile("^[" + re.escape("".join(sorted(_FIRST))) + ']|[",\r\n]').search
_BATCH = 2_000  # lines encoded and written at once


def utc_text(value: datetime) -> str:
    """RFC 3339 UTC, whole seconds: 2026-11-25T11:00:00Z."""
    if value.tzinfo is not UTC and value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:19] + "Z"  # drops "+00:00"


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


def _field(text: str) -> str:
    """Free text as a standard CSV field: neutralised, then quoted as csv.writer quotes."""
    text = neutralise(text)
    if '"' in text or "," in text or "\r" in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


class _Places(dict[str, str]):
    """Province, commune and level as CSV fields: few distinct values, each converted once."""

    def __missing__(self, text: str) -> str:
        self[text] = field = _field(text)
        return field


def _standard_lines(rows: Iterable[Row]) -> Iterator[str]:
    """The standard dialect's lines, written out by hand: the same bytes as csv.writer over
    _cells() (a test compares them) in about half its time. The row is unpacked in COLUMNS
    order; floats are written with repr(), which is what str() gives and what csv.writer
    writes, but faster inside an f-string than the format() it would otherwise call."""
    careful, places, utc = _CAREFUL, _Places(), utc_text
    for r in rows:
        (sid, name, province, commune, level, students, lat, lon, registered, connectivity,
         down, up, latency, tests, required, gap, bw_evidence, uptime, av_evidence, contracted,
         compliant, monitoring, last, reporting, clock_off, usable, computers, computers_gap,
         co_evidence, os_out, kinds, need, priority, assumed, speedtest, testers,
         failed) = r  # fmt: skip
        yield (
            f"{_field(sid) if careful(sid) else sid},"  # type: ignore[arg-type]
            f"{_field(name) if careful(name) else name},"  # type: ignore[arg-type]
            f"{places[province]},{places[commune]},{places[level]},"  # type: ignore[index]
            f"{'' if students is None else students},{'' if lat is None else repr(lat)},"
            f"{'' if lon is None else repr(lon)},{'true' if registered else 'false'},"
            f"{connectivity},{'' if down is None else repr(down)},"
            f"{'' if up is None else repr(up)},{'' if latency is None else repr(latency)},"
            f"{tests},{'' if required is None else repr(required)},{gap!r},{bw_evidence},"
            f"{'' if uptime is None else repr(uptime)},{av_evidence},"
            f"{'' if contracted is None else repr(contracted)},"
            f"{'' if compliant is None else 'true' if compliant else 'false'},{monitoring},"
            f"{'' if last is None else utc(last)},"  # type: ignore[arg-type]
            f"{reporting},{clock_off},{usable},{'' if computers is None else computers},"
            f"{computers_gap},{co_evidence},{os_out},{';'.join(kinds)},"  # type: ignore[arg-type]
            f"{need},{priority!r},{assumed!r},{speedtest},{testers},{failed}\r\n"
        )


class CsvExporter:
    """One header line with COLUMNS, then one line per school."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int:
        if options.dialect == "standard":
            return self._standard(rows, out)
        text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
        count = 0

        def counted() -> Iterator[list[Cell]]:
            nonlocal count
            for line in _decimal_comma(_cells(rows)):
                count += 1
                yield line

        try:
            writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
            writer.writerow(COLUMNS)
            writer.writerows(counted())
            text.flush()
        finally:
            text.detach()  # leave `out` open for the caller
        return count

    @staticmethod
    def _standard(rows: Iterable[Row], out: BinaryIO) -> int:
        out.write(("\ufeff" + ",".join(COLUMNS) + "\r\n").encode())
        count = 0
        batch: list[str] = []
        for line in _standard_lines(rows):
            batch.append(line)
            if len(batch) == _BATCH:
                out.write("".join(batch).encode())
                count += _BATCH
                batch.clear()
        out.write("".join(batch).encode())
        return count + len(batch)


EXPORTER = CsvExporter()
