"""CSV: UTF-8 with a byte-order mark (so Excel shows Vietnamese), formula-like text neutralised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from collector.export import COLUMNS, Cell, Row, neutralise


def text_cell(value: Cell) -> str | int | float:
    """A cell as CSV writes it: numbers as numbers, text neutralised, times in RFC 3339 UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _cells(rows: Iterable[Row]) -> Iterator[list[str | int | float]]:
    for r in rows:
        yield [text_cell(v) for v in r]


class CsvExporter:
    """One header line with COLUMNS, then one line per school."""

    def write(self, rows: Iterable[Row], out: BinaryIO) -> int:
        text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=False)
        try:
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(COLUMNS)
            count = 0
            for cells in _cells(rows):
                writer.writerow(cells)
                count += 1
            text.flush()
        finally:
            text.detach()  # leave `out` open for the caller
        return count


EXPORTER = CsvExporter()
