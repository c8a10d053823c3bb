"""XLSX: a "Schools" sheet (one row per school) and a "Provinces" sheet of per-province totals.

Text is always written as text (never as a formula, number or link) and formula-like text is
also neutralised, so the list stays safe when re-saved as CSV; numbers stay numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import xlsxwriter

from edugap.collector.export import COLUMN, COLUMNS, Row
from edugap.collector.model import SHORTFALL_KINDS
from edugap.collector.safetext import neutralise

UNREGISTERED = "(unregistered)"
TOTALS_COLUMNS: tuple[str, ...] = (
    "province",
    "schools",
    "students",
    "schools_with_shortfall",
    *(f"shortfall_{k}" for k in SHORTFALL_KINDS),
    "bandwidth_gap_mbps",
    "computers_required",
    "computers_usable",
    "computers_gap",
    "os_out_of_support",
)


@dataclass(slots=True)
class _Totals:
    schools: int = 0
    students: int = 0
    short: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHORTFALL_KINDS, 0))
    gap_mbps: float = 0.0
    required: int = 0
    usable: int = 0
    gap: int = 0
    os_out: int = 0

    def add(self, r: Row) -> None:
        self.schools += 1
        self.students += int(r[COLUMN["students"]] or 0)  # type: ignore[arg-type]
        shortfalls = str(r[COLUMN["shortfalls"]] or "")
        if shortfalls:
            self.short += 1
            for kind in shortfalls.split(";"):
                self.kinds[kind] += 1
        self.gap_mbps += float(r[COLUMN["bandwidth_gap_mbps"]] or 0)  # type: ignore[arg-type]
        self.required += int(r[COLUMN["computers_required"]] or 0)  # type: ignore[arg-type]
        self.usable += int(r[COLUMN["computers_usable"]] or 0)  # type: ignore[arg-type]
        self.gap += int(r[COLUMN["computers_gap"]] or 0)  # type: ignore[arg-type]
        self.os_out += int(r[COLUMN["os_out_of_support"]] or 0)  # type: ignore[arg-type]

    def cells(self, name: str) -> list[Any]:
        return [
            name,
            self.schools,
            self.students,
            self.short,
            *self.kinds.values(),
            round(self.gap_mbps, 2),
            self.required,
            self.usable,
            self.gap,
            self.os_out,
        ]


class XlsxExporter:
    """Writes the workbook row by row (xlsxwriter's constant-memory mode)."""

    def write(self, rows: Iterable[Row], out: BinaryIO) -> int:
        book = xlsxwriter.Workbook(
            out,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        bold = book.add_format({"bold": True})
        when = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        sheet = book.add_worksheet("Schools")
        sheet.freeze_panes(1, 1)
        sheet.write_row(0, 0, COLUMNS, bold)
        totals: dict[str, _Totals] = defaultdict(_Totals)
        everything = _Totals()
        count = 0
        for count, r in enumerate(rows, 1):
            for col, value in enumerate(r):
                if value is None:
                    continue
                if isinstance(value, str):
                    sheet.write_string(count, col, neutralise(value))
                elif isinstance(value, bool):
                    sheet.write_boolean(count, col, value)
                elif isinstance(value, datetime):
                    # Excel has no time zones: UTC, as the docs and the column note say
                    naive = value.astimezone(UTC).replace(tzinfo=None)
                    sheet.write_datetime(count, col, naive, when)
                else:
                    sheet.write_number(count, col, value)
            province = str(r[COLUMN["province"]] or "") or UNREGISTERED
            totals[province].add(r)
            everything.add(r)
        sheet.autofilter(0, 0, max(count, 1), len(COLUMNS) - 1)
        sheet.write_comment(0, COLUMN["last_report"], "UTC")

        summary = book.add_worksheet("Provinces")
        summary.freeze_panes(1, 1)
        summary.write_row(0, 0, TOTALS_COLUMNS, bold)
        line = 0
        for line, province in enumerate(sorted(totals), 1):
            summary.write_row(line, 0, totals[province].cells(neutralise(province)))
        summary.write_row(line + 1, 0, everything.cells("All provinces"), bold)
        book.close()
        return count


EXPORTER = XlsxExporter()
