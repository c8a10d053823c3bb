"""The shortage list's columns: their order, their Vietnamese headers, one school as a row.

Every format and the HTTP API build a school from `row()`, so rounding and the shape of every
value are the same everywhere (rates to 0.01 Mbps, `shortfalls` a list of kinds that CSV and
XLSX join with ";").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edugap.collector.model import SchoolStatus

Cell = str | int | float | bool | datetime | tuple[str, ...] | None
Row = tuple[Cell, ...]

#: The columns of every format, in order (the machine names CSV, JSON and the API use).
COLUMNS: tuple[str, ...] = (
    "school_id",
    "name",
    "province",
    "commune",
    "level",
    "students",
    "lat",
    "lon",
    "registered",
    "connectivity",
    "download_mbps",
    "upload_mbps",
    "latency_ms",
    "tests_7d",
    "required_mbps",
    "bandwidth_gap_mbps",
    "bandwidth_evidence",
    "uptime_pct",
    "availability_evidence",
    "contracted_mbps",
    "isp_compliant",
    "monitoring",
    "last_report",
    "devices_reporting",
    "devices_clock_off",
    "computers_usable",
    "computers_required",
    "computers_gap",
    "computers_evidence",
    "os_out_of_support",
    "shortfalls",
    "need",
    "priority",
    "priority_assumed",
    "speedtest",
    "speed_testers",
    "tests_failed_7d",
)
COLUMN = {name: i for i, name in enumerate(COLUMNS)}

#: Headers of the XLSX sheets for planners (`--lang vi`, the default); CSV and JSON keep COLUMNS.
HEADERS_VI: dict[str, str] = {
    "school_id": "Mã trường",
    "name": "Tên trường",
    "province": "Tỉnh/thành phố",
    "commune": "Xã/phường",
    "level": "Cấp học",
    "students": "Số học sinh",
    "lat": "Vĩ độ",
    "lon": "Kinh độ",
    "registered": "Có trong danh sách trường",
    "connectivity": "Kết nối",
    "download_mbps": "Tốc độ tải xuống (Mbps)",
    "upload_mbps": "Tốc độ tải lên (Mbps)",
    "latency_ms": "Độ trễ (ms)",
    "tests_7d": "Số lần đo trong 7 ngày",
    "required_mbps": "Băng thông cần (Mbps)",
    "bandwidth_gap_mbps": "Băng thông còn thiếu (Mbps)",
    "bandwidth_evidence": "Căn cứ băng thông",
    "uptime_pct": "Thời gian kết nối trong giờ học (%)",
    "availability_evidence": "Căn cứ thời gian kết nối",
    "contracted_mbps": "Băng thông theo hợp đồng (Mbps)",
    "isp_compliant": "Đạt hợp đồng",
    "monitoring": "Tình trạng giám sát",
    "last_report": "Báo cáo gần nhất",
    "devices_reporting": "Số máy đang báo cáo",
    "devices_clock_off": "Số máy lệch đồng hồ",
    "computers_usable": "Số máy tính dùng được",
    "computers_required": "Số máy tính cần",
    "computers_gap": "Số máy tính còn thiếu",
    "computers_evidence": "Căn cứ số máy tính",
    "os_out_of_support": "Số máy cần nâng cấp hệ điều hành",
    "shortfalls": "Thiếu hụt",
    "need": "Nhu cầu",
    "priority": "Mức ưu tiên (đo được)",
    "priority_assumed": "Mức ưu tiên (giả định)",
    "speedtest": "Tình trạng đo tốc độ",
    "speed_testers": "Số máy được giao đo tốc độ",
    "tests_failed_7d": "Số lần đo lỗi trong 7 ngày",
}
assert set(HEADERS_VI) == set(COLUMNS)


def headers(lang: str, timezone: str) -> tuple[str, ...]:
    """The column headers in `lang` ("vi" or "en"), the time column naming its zone."""
    names = [HEADERS_VI[c] if lang == "vi" else c for c in COLUMNS]
    at = COLUMN["last_report"]
    names[at] = f"{names[at]} ({'giờ ' if lang == 'vi' else ''}{timezone})"
    return tuple(names)


def _r2(value: float | None) -> float | None:
    """round(value, 2), in half the time for the usual rate: the export's hottest call.

    value * 100 is off the exact product by at most half a unit in its last place; unless that
    product lies within 1e-9 of its own size from halfway between two integers, rounding it to
    the nearest integer picks the integer that correct rounding to 0.01 picks, and dividing
    that integer by 100 gives the float round() gives. Otherwise (and for zero, which keeps
    its sign, NaN, infinity, and an int, which round() keeps an int) round() decides.
    tests/collector/test_export_large.py compares the two over a million values."""
    if value is None:
        return None
    if type(value) is not float:
        return round(value, 2)
    scaled = value * 100.0
    try:
        whole = round(scaled)
    except (ValueError, OverflowError):  # NaN, infinity
        return round(value, 2)
    if whole and abs(scaled - whole) < 0.5 - 1e-9 * abs(scaled):
        return whole / 100
    return round(value, 2)


def row(s: SchoolStatus) -> Row:
    """One school as a row aligned with COLUMNS (rates and percentages rounded to 0.01)."""
    r2 = _r2  # this runs once per school per export
    return (
        s.school_id,
        s.name,
        s.province,
        s.commune,
        s.level,
        s.students,
        s.lat,
        s.lon,
        s.registered,
        s.connectivity,
        r2(s.download_mbps),
        r2(s.upload_mbps),
        r2(s.latency_ms),
        s.tests_7d,
        r2(s.required_mbps),
        r2(s.bandwidth_gap_mbps),
        s.bandwidth_evidence,
        r2(s.uptime_pct),
        s.availability_evidence,
        r2(s.contracted_mbps),
        s.isp_compliant,
        s.monitoring,
        s.last_report,
        s.devices_reporting,
        s.devices_clock_off,
        s.computers_usable,
        s.computers_required,
        s.computers_gap,
        s.computers_evidence,
        s.os_out_of_support,
        s.shortfalls,
        s.need,
        s.priority,
        s.priority_assumed,
        s.speedtest,
        s.speed_testers,
        s.tests_failed_7d,
    )


def record(s: SchoolStatus) -> dict[str, Any]:
    """One school as the JSON object the API and the JSON exports give (keys: COLUMNS)."""
    return dict(zip(COLUMNS, row(s), strict=True))
