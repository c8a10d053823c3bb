"""XLSX worksheets written a whole row at a time, for the national export's 4 million cells.

xlsxwriter spends about 3 µs of Python on every cell (argument checks, a cell object, then
attribute by attribute XML); at 60,000 schools, with the budget and survey sheets repeating
every school once more, that was three quarters of a 15-20 s export. `RowSheet` is an xlsxwriter
worksheet that also takes a row as XML built here by column type, in the same constant-memory
stream xlsxwriter writes its own rows to: the header, formats, column widths, frozen panes,
autofilter, and the workbook around it stay xlsxwriter's.

The cells are what xlsxwriter's constant-memory mode writes: numbers as numbers, booleans as
booleans, times as serial numbers with a date format, text as inline strings with XML and
control characters escaped the way Excel reads them back. Text is never a formula.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 for every date after 28 February 1900
_MAX_UTF16 = 32_767  # the longest text a cell holds, in UTF-16 code units
# text that needs more than <t>text</t>: XML's specials, controls Excel writes as _xHHHH_, text
# that already looks like such an escape, or leading or trailing space (kept with xml:space)
_PLAIN_NOT = re.compile(r"[&<>\x00-\x08\x0b-\x1f]|_x[0-9a-fA-F]{4}_|^\s|\s$").search
_ESCAPE_LIKE = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def inline_text(text: str) -> str:
    """A text cell's <is> element: what xlsxwriter writes for it in constant-memory mode."""
    if len(text) < _MAX_UTF16 // 2 and not _PLAIN_NOT(text):
        return f"<is><t>{text}</t></is>"
    if len(text.encode("utf-16-le")) > 2 * _MAX_UTF16:
        text = text.encode("utf-16-le")[: 2 * _MAX_UTF16].decode("utf-16-le", "ignore")
    text = _ESCAPE_LIKE.sub(r"_x005F\1", text)  # a literal "_x0041_" must not read as "A"
    text = _CONTROL.sub(lambda m: f"_x{ord(m.group()):04X}_", text)
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<is><t{space}>{text}</t></is>"


def excel_time(value: datetime) -> float:
    """A naive local time as Excel's serial day number (xlsxwriter's arithmetic)."""
    delta = value - _EPOCH
    return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86_400


class RowSheet(Worksheet):  # type: ignore[misc]
    """A constant-memory worksheet that also takes whole rows as XML (`append`).

    It relies on how xlsxwriter streams rows in constant-memory mode: `_write_single_row`
    writes out the row it holds when a later one starts, and `fh` is the sheet's row stream
    until the workbook closes. tests/collector/test_export_xlsx.py opens what it writes."""

    def append(self, row: int, xml: str) -> None:
        """Write row `row` (0-based, after every row written so far) as `<row>` XML."""
        if row <= self.previous_row:
            raise ValueError(f"row {row} after row {self.previous_row}: rows go in order")
        self._write_single_row(row)  # whatever xlsxwriter holds (the header) goes first
        self._check_dimensions(row, 0)
        self.fh.write(xml)


# stands for the row number in a built row: the same school's row goes on two sheets
# (everything, and the budget or the survey), built once; escaped text never holds a NUL
_ROW = "\0"


class RowBuilder:
    """Builds rows as XML by the type of each cell, for sheets with the same columns."""

    def __init__(self, columns: int, when_format: Any, repeated: Sequence[bool] = ()) -> None:
        self.refs = [xl_col_to_name(col) + _ROW for col in range(columns)]
        self.when = when_format._get_xf_index()  # the style number of the date format
        self.repeated = tuple(repeated) or (False,) * columns
        self.texts: dict[str, str] = {}  # repeated text (places, vocabularies) escaped once

    def build(self, cells: Sequence[Any]) -> tuple[str, list[int]]:
        """The cells of a row as XML (the row number left as _ROW) and each one's width;
        text in a `repeated` column is escaped once per export."""
        refs, repeated, texts = self.refs, self.repeated, self.texts
        sizes = [0] * len(refs)
        parts = []
        for col, value in enumerate(cells):
            kind = type(value)
            if kind is str:
                if repeated[col]:
                    body = texts.get(value)
                    if body is None:
                        body = texts[value] = inline_text(value)
                else:
                    body = inline_text(value)
                parts.append(f'<c r="{refs[col]}" t="inlineStr">{body}</c>')
                sizes[col] = len(value)
            elif kind is int or kind is float:
                if value - value:  # NaN or infinite: no number a spreadsheet holds; left empty
                    continue
                text = repr(value)
                parts.append(f'<c r="{refs[col]}"><v>{text}</v></c>')
                sizes[col] = len(text)
            elif value is None:
                continue
            elif kind is bool:
                parts.append(f'<c r="{refs[col]}" t="b"><v>{1 if value else 0}</v></c>')
                sizes[col] = 5
            elif kind is datetime:
                at = excel_time(value)
                parts.append(f'<c r="{refs[col]}" s="{self.when}"><v>{at!r}</v></c>')
                sizes[col] = 16
            else:
                raise TypeError(f"no XLSX cell for {kind.__name__} {value!r} in column {col}")
        return "".join(parts), sizes


class RowWriter:
    """Appends built rows to one sheet and keeps its columns' widths (longest content)."""

    def __init__(self, sheet: RowSheet, widths: list[int]) -> None:
        self.sheet = sheet
        self.widths = widths
        self.rows = 0

    def add(self, built: tuple[str, list[int]]) -> None:
        """Append a row from RowBuilder.build as the sheet's next row."""
        cells, sizes = built
        self.rows += 1
        n = str(self.rows + 1)  # Excel's row number: the header is row 1
        self.widths = list(map(max, self.widths, sizes))
        self.sheet.append(self.rows, f'<row r="{n}">{cells.replace(_ROW, n)}</row>')
