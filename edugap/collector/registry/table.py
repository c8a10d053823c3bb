"""A table file as offices write it: CSV, TSV or XLSX, read into a header and text cells.

CSV: the encoding is found from the byte-order mark (UTF-8 or UTF-16, as Excel's "CSV UTF-8"
and "Unicode Text" write them) or is UTF-8; the delimiter (`,`, `;` or tab) from the header
line; `found` says which, so a surprise is visible. A `;`- or tab-separated file may use a
decimal comma (Excel on Vietnamese regional settings writes one). XLSX is read with openpyxl.

The header is matched case-, space- and underscore-insensitively ("School_ID " is
`school_id`); a column named twice is refused, and a quote that is never closed is reported at
the line that opens it.

Standard library only (openpyxl is imported for XLSX alone), so deploy/mosquitto/
make_credentials.py reads the registry with this module on a broker host that has only the
agent's install of edugap.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

DELIMITERS = {",": "','", ";": "';'", "\t": "tab"}
_ZIP = b"PK\x03\x04"
_GROUPED = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+$")  # 1.234.567 with a decimal comma: thousands


class TableError(ValueError):
    """The file as a whole cannot be read; the message says where and how to save it instead."""


@dataclass(slots=True)
class Table:
    """A header of normalised column names and the rows under it, as text."""

    header: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # (line or row number, cells)
    found: str = ""  # what was read: "UTF-8 with BOM, ';'-separated", "XLSX, sheet 'Schools'"
    decimal_comma: bool = False  # numbers may use ',' as the decimal mark
    unit: str = "line"  # what the numbers count: CSV lines or spreadsheet rows
    errors: list[tuple[int, str]] = field(default_factory=list)  # rows that could not be read

    def records(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(number, {column: cell}) per row; a short row's missing cells are ''."""
        names = self.header
        for number, cells in self.rows:
            yield number, {n: cells[i] if i < len(cells) else "" for i, n in enumerate(names) if n}


def column_name(text: str) -> str:
    """A header cell as a column name: "School_ID " and "school id" are both `school_id`."""
    return re.sub(r"[\s_-]+", "_", text.strip().lstrip("\ufeff")).strip("_").lower()


def number(text: str, decimal_comma: bool) -> float:
    """A decimal as written; with a decimal comma, '.' groups thousands ("1.234,5")."""
    if decimal_comma and "," in text:
        text = text.replace(".", "").replace(",", ".")
    return float(text)


def whole(text: str, decimal_comma: bool) -> int:
    """A whole number as written; with a decimal comma, '.' groups thousands ("1.234")."""
    if decimal_comma and _GROUPED.match(text):
        text = text.replace(".", "")
    return int(text)


def read_table(data: bytes, source: str, wanted: Sequence[str] = ()) -> Table:
    """The table in `data` (the bytes of the file called `source`). `wanted` columns help
    find the delimiter and, in a workbook, the sheet. Raises TableError."""
    if data.startswith(_ZIP) or source.lower().endswith((".xlsx", ".xlsm")):
        return _read_xlsx(data, source, wanted)
    if source.lower().endswith(".xls") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise TableError("an Excel 97-2003 workbook (.xls): save it as XLSX or as CSV UTF-8")
    text, encoding = _decode(data)
    delimiter = _delimiter(text, wanted)
    table = _read_csv(text, delimiter)
    table.found = f"{encoding}, {DELIMITERS[delimiter]}-separated"
    table.decimal_comma = delimiter != ","
    return table


def _decode(data: bytes) -> tuple[str, str]:
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[2:].decode(codec), "UTF-16 with BOM"
            except UnicodeDecodeError as e:
                raise TableError(
                    f"not UTF-16 after its byte-order mark (offset {e.start})"
                ) from None
    marked = data.startswith(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
        return text, "UTF-8 with BOM" if marked else "UTF-8"
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        hint = (
            "it looks like UTF-16 without a byte-order mark"
            if data[1:2] == b"\x00" or data[:1] == b"\x00"
            else "Excel's plain 'CSV' uses the Windows code page"
        )
        raise TableError(
            f"line {line}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); {hint}: "
            "save it as 'CSV UTF-8' or 'Unicode Text', or import the XLSX itself"
        ) from None


def _delimiter(text: str, wanted: Sequence[str]) -> str:
    """The delimiter that makes the most wanted columns, then the most columns, of the header."""
    first = next((line for line in text.splitlines() if line.strip()), "")

    def score(d: str) -> tuple[int, int]:
        cells = [column_name(c) for c in next(csv.reader([first], delimiter=d), [])]
        return sum(w in cells for w in wanted), len(cells)

    return max(DELIMITERS, key=score)  # ties: ',' first


def _read_csv(text: str, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    errors: list[tuple[int, str]] = []
    line = 0
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if reader.line_num > line and str(e) == "unexpected end of data":
                raise TableError(
                    f"line {start}: a quote opens a field here and is never closed, so lines "
                    f"{start}-{reader.line_num} would be one field; close the quote "
                    "(nothing was imported)"
                ) from None
            line = reader.line_num
            errors.append((start, f"bad quoting: {e}"))
            continue
        line = reader.line_num  # a quoted field may span lines
        if header is None:
            if any(c.strip() for c in record):
                header = _header(record)
            continue
        rows.append((start, record))
    if header is None:
        raise TableError("the file is empty: expected a header line")
    return Table(header, rows, errors=errors)


def _header(cells: Sequence[str], unit: str = "column") -> list[str]:
    names = [column_name(c) for c in cells]
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if not name:
            continue
        if name in seen:
            raise TableError(
                f"the header names column '{name}' twice ({unit}s {seen[name]} and {i}): "
                "rename or delete one, so no value is silently taken from the other"
            )
        seen[name] = i
    return names


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else str(value)


def _read_xlsx(data: bytes, source: str, wanted: Sequence[str]) -> Table:
    try:
        import openpyxl
    except ImportError:
        raise TableError("reading XLSX needs openpyxl (pip install 'edugap[collector]')") from None
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # zipfile, XML and openpyxl's own errors: all mean "not a workbook"
        raise TableError(f"not a readable XLSX workbook ({type(e).__name__}: {e})") from None
    try:
        best: Table | None = None
        for sheet in book.worksheets:
            table = _sheet_table(sheet)
            if table is None:
                continue
            if best is None or all(w in table.header for w in wanted):
                best = table
                if all(w in table.header for w in wanted):
                    break
        if best is None:
            raise TableError("every sheet of the workbook is empty")
        return best
    finally:
        book.close()


def _sheet_table(sheet: object) -> Table | None:
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for number, values in enumerate(sheet.iter_rows(values_only=True), 1):  # type: ignore[attr-defined]
        cells = [_cell(v) for v in values]
        if header is None:
            if any(cells):
                header = _header(cells)
            continue
        rows.append((number, cells))
    if header is None:
        return None
    title = getattr(sheet, "title", "?")
    return Table(header, rows, found=f"XLSX, sheet '{title}'", decimal_comma=True, unit="row")
