"""XLSX for planners: every school, the budget list, the survey list, and per-province totals.

Sheets (Vietnamese names and headers by default, English with `--lang en`): all schools; the
budget list (need measured); the list to survey or enrol (need assumed); per-province totals with
the measured and the assumed gaps apart, provinces in Vietnamese order. Columns are as wide as
their contents, times are in the policy's time zone (named in the header). Text is always
written as a text cell (never a formula, number or link), so it needs no visible `'`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import xlsxwriter

from edugap.collector.export import COLUMN, COLUMNS, ExportOptions, Row, headers
from edugap.collector.export.xlsx_rows import RowBuilder, RowSheet, RowWriter
from edugap.collector.model import SHORTFALL_KINDS
from edugap.collector.registry.places import collation_key

SHEETS = {
    "vi": ("Trường học", "Ngân sách (đo được)", "Cần khảo sát", "Tỉnh"),
    "en": ("Schools", "Budget", "Survey", "Provinces"),
}
UNREGISTERED = {"vi": "(không có trong danh sách trường)", "en": "(unregistered)"}
ALL = {"vi": "Tổng cộng", "en": "All provinces"}
TOTALS_COLUMNS: tuple[str, ...] = (
    "province",
    "schools",
    "students",
    "schools_need_measured",
    "schools_need_assumed",
    "schools_with_shortfall",
    *(f"shortfall_{k}" for k in SHORTFALL_KINDS),
    "bandwidth_gap_measured_mbps",
    "bandwidth_gap_assumed_mbps",
    "computers_required",
    "computers_usable",
    "computers_gap_measured",
    "computers_gap_assumed",
    "os_out_of_support",
)
TOTALS_VI = {
    "province": "Tỉnh/thành phố",
    "schools": "Số trường",
    "students": "Số học sinh",
    "schools_need_measured": "Trường cần đầu tư (đo được)",
    "schools_need_assumed": "Trường cần khảo sát",
    "schools_with_shortfall": "Trường có thiếu hụt",
    "shortfall_bandwidth": "Thiếu băng thông",
    "shortfall_computers": "Thiếu máy tính",
    "shortfall_availability": "Kết nối không ổn định",
    "shortfall_isp_contract": "Không đạt hợp đồng",
    "shortfall_os_upgrade": "Cần nâng cấp hệ điều hành",
    "shortfall_not_monitored": "Không được giám sát",
    "bandwidth_gap_measured_mbps": "Băng thông thiếu, đo được (Mbps)",
    "bandwidth_gap_assumed_mbps": "Băng thông thiếu, giả định (Mbps)",
    "computers_required": "Máy tính cần",
    "computers_usable": "Máy tính dùng được",
    "computers_gap_measured": "Máy tính thiếu, đo được",
    "computers_gap_assumed": "Máy tính thiếu, giả định",
    "os_out_of_support": "Máy cần nâng cấp hệ điều hành",
}
assert set(TOTALS_VI) == set(TOTALS_COLUMNS)
_MAX_WIDTH = 60
_HEADER_WIDTH = 22  # a longer header wraps instead of widening its column
# columns whose text repeats from school to school (places, levels, vocabularies): escaped once
_REPEATED = tuple(
    c in ("province", "commune", "level", "connectivity", "bandwidth_evidence",
          "availability_evidence", "monitoring", "computers_evidence", "shortfalls", "need",
          "speedtest")
    for c in COLUMNS
)  # fmt: skip


def _int(r: Row, column: str) -> int:
    return int(r[COLUMN[column]] or 0)  # type: ignore[arg-type]


def _float(r: Row, column: str) -> float:
    return float(r[COLUMN[column]] or 0)  # type: ignore[arg-type]


@dataclass(slots=True)
class _Totals:
    schools: int = 0
    students: int = 0
    need: dict[str, int] = field(default_factory=lambda: {"measured": 0, "assumed": 0})
    short: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHORTFALL_KINDS, 0))
    gap_mbps: dict[str, float] = field(default_factory=lambda: {"measured": 0.0, "assumed": 0.0})
    required: int = 0
    usable: int = 0
    gap: dict[str, int] = field(default_factory=lambda: {"measured": 0, "assumed": 0})
    os_out: int = 0

    def add(self, r: Row) -> None:
        self.schools += 1
        self.students += _int(r, "students")
        need = str(r[COLUMN["need"]])
        if need in self.need:
            self.need[need] += 1
        kinds: Sequence[str] = r[COLUMN["shortfalls"]] or ()  # type: ignore[assignment]
        if kinds:
            self.short += 1
            for kind in kinds:
                self.kinds[kind] += 1
        evidence = str(r[COLUMN["bandwidth_evidence"]])
        if evidence in self.gap_mbps:
            self.gap_mbps[evidence] += _float(r, "bandwidth_gap_mbps")
        evidence = str(r[COLUMN["computers_evidence"]])
        if evidence in self.gap:
            self.gap[evidence] += _int(r, "computers_gap")
        self.required += _int(r, "computers_required")
        self.usable += _int(r, "computers_usable")
        self.os_out += _int(r, "os_out_of_support")

    def cells(self, name: str) -> list[Any]:
        return [
            name,
            self.schools,
            self.students,
            self.need["measured"],
            self.need["assumed"],
            self.short,
            *self.kinds.values(),
            round(self.gap_mbps["measured"], 2),
            round(self.gap_mbps["assumed"], 2),
            self.required,
            self.usable,
            self.gap["measured"],
            self.gap["assumed"],
            self.os_out,
        ]


class _Sheet:
    """One worksheet written row by row, as wide as its contents (see xlsx_rows)."""

    def __init__(self, book: Any, name: str, header: Sequence[str], formats: dict[str, Any]):
        self.sheet: RowSheet = book.add_worksheet(name, worksheet_class=RowSheet)
        self.header = header
        self.sheet.freeze_panes(1, 1)
        self.sheet.write_row(0, 0, header, formats["header"])
        self.writer = RowWriter(self.sheet, [min(len(h), _HEADER_WIDTH) for h in header])

    @property
    def rows(self) -> int:
        return self.writer.rows

    def add(self, built: tuple[str, list[int]]) -> None:
        self.writer.add(built)

    def close(self) -> None:
        for col, width in enumerate(self.writer.widths):
            self.sheet.set_column(col, col, min(width, _MAX_WIDTH) + 2)
        self.sheet.autofilter(0, 0, max(self.rows, 1), len(self.header) - 1)


def _cells(r: Row, zone: ZoneInfo) -> list[Any]:
    cells: list[Any] = list(r)
    at = cells[COLUMN["last_report"]]
    if at is not None:  # Excel has no time zones: local time, the zone in the header
        cells[COLUMN["last_report"]] = at.astimezone(zone).replace(tzinfo=None)
    cells[COLUMN["shortfalls"]] = ";".join(cells[COLUMN["shortfalls"]])
    return cells


class XlsxExporter:
    """Writes the workbook row by row (xlsxwriter's constant-memory mode)."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int:
        book = xlsxwriter.Workbook(
            out,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        formats = {
            "header": book.add_format({"bold": True, "text_wrap": True, "valign": "top"}),
            "when": book.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
            "bold": book.add_format({"bold": True}),
        }
        lang = options.lang
        names = SHEETS[lang]
        header = headers(lang, options.timezone)
        everything, budget, survey = (_Sheet(book, n, header, formats) for n in names[:3])
        school = RowBuilder(len(header), formats["when"], _REPEATED)
        lists = {"measured": budget, "assumed": survey}
        zone = ZoneInfo(options.timezone)
        totals: dict[str, _Totals] = defaultdict(_Totals)
        overall = _Totals()
        for r in rows:
            built = school.build(_cells(r, zone))  # once for both of its sheets
            everything.add(built)
            chosen = lists.get(str(r[COLUMN["need"]]))
            if chosen is not None:
                chosen.add(built)
            totals[str(r[COLUMN["province"]] or "")].add(r)
            overall.add(r)
        for sheet in (everything, budget, survey):
            sheet.close()

        total_header = [TOTALS_VI[c] if lang == "vi" else c for c in TOTALS_COLUMNS]
        summary = _Sheet(book, names[3], total_header, formats)
        province_row = RowBuilder(len(total_header), formats["when"])
        provinces = sorted((p for p in totals if p), key=collation_key)
        for province in provinces + ([""] if "" in totals else []):
            summary.add(province_row.build(totals[province].cells(province or UNREGISTERED[lang])))
        summary.close()
        summary.sheet.write_row(summary.rows + 1, 0, overall.cells(ALL[lang]), formats["bold"])
        book.close()
        return everything.rows


EXPORTER = XlsxExporter()
assert len(COLUMNS) == len(headers("vi", "UTC"))
