"""Evidence apart from assumption: the worked example of docs/policy.md, by hand.

Three schools of 400 students in one province (required 20 Mbps and 20 computers; size factor
sqrt(400) = 20): A measured (tests at 8 Mbps, 12 usable computers, heartbeats), B never
reported, C measured good bandwidth but no inventory and no heartbeats. Each kind is measured,
assumed or absent somewhere; the export's columns, the province totals (API and XLSX) and the
ranking are checked against the figures worked out by hand.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from edugap.collector.export import ExportOptions, Filters, filter_schools, write_shortages
from edugap.collector.model import BandwidthRow, DeviceRow, HeartbeatHour, School, Snapshot
from edugap.collector.policy.evaluate import compute
from edugap.collector.policy.rules import Policy, load_policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
MON = datetime(2026, 11, 23, tzinfo=UTC)  # Monday 07:00 in Hà Nội
CB = "Cao Bằng"


def _school(sid: str) -> School:
    return School(sid, f"Trường {sid}", CB, "Xã Bảo Lâm", "primary", 22.8, 105.5, 400)


def _test(sid: str, hours_ago: float, down: float) -> BandwidthRow:
    return BandwidthRow(sid, "d", NOW - timedelta(hours=hours_ago), down, 2.0, 40.0, None, False)


def _device(n: int) -> DeviceRow:
    at = NOW - timedelta(days=1)
    return DeviceRow("A", f"pc{n}", at, at, 8192, 4, "Windows", "11 25H2 Pro", None, "desktop",
                     None)  # fmt: skip


BANDWIDTH = [_test("A", 2, 6.0), _test("A", 26, 8.0), _test("A", 50, 9.0), _test("C", 3, 25.0)]
DEVICES = [_device(n) for n in range(12)]
HOURS = [HeartbeatHour("A", MON + timedelta(hours=h), 1, 60, 60) for h in range(10)]
LAST = {"A": NOW - timedelta(hours=2), "C": NOW - timedelta(hours=3)}


def evaluated(policy: Policy | None = None) -> Snapshot:
    return compute(
        [_school(s) for s in "ABC"], LAST, BANDWIDTH, DEVICES, HOURS, policy or load_policy(), NOW
    )


def test_each_kind_says_what_it_rests_on() -> None:
    a, b, c = (evaluated().schools[s] for s in "ABC")
    # A: median 8 of 20 Mbps; 12 of 20 computers; 100 % uptime: everything measured
    assert (a.bandwidth_gap_mbps, a.bandwidth_evidence) == (12.0, "measured")
    assert (a.computers_gap, a.computers_evidence) == (8, "measured")
    assert (a.uptime_pct, a.availability_evidence) == (100.0, "measured")
    assert (a.shortfalls, a.need) == (("bandwidth", "computers"), "measured")
    # B: nothing at all: the policy's rule assumes the whole requirement, no uptime rule
    assert (b.bandwidth_gap_mbps, b.bandwidth_evidence) == (20.0, "assumed")
    assert (b.computers_gap, b.computers_evidence) == (20, "assumed")
    assert b.availability_evidence == "absent"
    assert (b.shortfalls, b.need) == (("not_monitored",), "assumed")
    # C: a good link measured; no inventory, no heartbeats
    assert (c.bandwidth_gap_mbps, c.bandwidth_evidence, c.connectivity) == (0.0, "measured", "good")
    assert (c.computers_gap, c.computers_evidence) == (20, "assumed")
    assert (c.availability_evidence, c.shortfalls, c.need) == ("absent", (), "assumed")


def test_priorities_and_ranking_put_measured_need_first() -> None:
    snap = evaluated()
    a, b, c = (snap.schools[s] for s in "ABC")
    assert (a.priority, a.priority_assumed) == (720.0, 0.0)  # 100 x (0.4 x 12/20 + 0.3 x 8/20) x 20
    assert (b.priority, b.priority_assumed) == (0.0, 1600.0)  # 100 x (0.4 + 0.3 + 0.1) x 20
    assert (c.priority, c.priority_assumed) == (0.0, 600.0)  # 100 x 0.3 x 20
    assert [s.school_id for s in snap.by_priority()] == ["A", "B", "C"]  # B's 1600 ranks after A


def test_province_totals_keep_measured_and_assumed_apart() -> None:
    (cb,) = evaluated().provinces
    assert (cb.bandwidth_gap_measured_mbps, cb.bandwidth_gap_assumed_mbps) == (12.0, 20.0)
    assert cb.bandwidth_gap_mbps == 32.0
    assert (cb.computers_gap_measured, cb.computers_gap_assumed, cb.computers_gap) == (8, 40, 48)
    assert cb.by_need == {"measured": 1, "assumed": 2, "none": 0}


def test_without_the_rule_for_missing_evidence_gaps_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[required]\nunknown_gap = "zero"\n[computers]\nno_inventory_gap = "zero"\n')
    snap = evaluated(load_policy(path))
    b, c = snap.schools["B"], snap.schools["C"]
    assert (b.bandwidth_gap_mbps, b.bandwidth_evidence) == (0, "absent")
    assert b.computers_evidence == "absent"
    assert (b.need, b.priority_assumed) == ("assumed", 200.0)  # still not monitored: 0.1 x 20 x 100
    assert (c.computers_gap, c.computers_evidence, c.need) == (0, "absent", "none")
    (cb,) = snap.provinces
    assert (cb.bandwidth_gap_assumed_mbps, cb.computers_gap_assumed) == (0.0, 0)


def test_the_export_columns_the_lists_and_the_provinces_sheet(tmp_path: Path) -> None:
    snap = evaluated()
    out = io.BytesIO()
    assert write_shortages(snap, "csv", out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    assert [r["school_id"] for r in rows] == ["A", "B", "C"]
    columns = ("bandwidth_gap_mbps", "bandwidth_evidence", "computers_gap",
               "computers_evidence", "availability_evidence", "shortfalls", "need", "priority",
               "priority_assumed")  # fmt: skip
    assert [tuple(r[k] for k in columns) for r in rows] == [
        ("12.0", "measured", "8", "measured", "measured", "bandwidth;computers", "measured",
         "720.0", "0.0"),
        ("20.0", "assumed", "20", "assumed", "absent", "not_monitored", "assumed", "0.0",
         "1600.0"),
        ("0.0", "measured", "20", "assumed", "absent", "", "assumed", "0.0", "600.0"),
    ]  # fmt: skip
    budget = filter_schools(snap, Filters(need="measured"))
    survey = filter_schools(snap, Filters(need="assumed"))
    assert [s.school_id for s in budget] == ["A"] and [s.school_id for s in survey] == ["B", "C"]

    xlsx = io.BytesIO()
    write_shortages(snap, "xlsx", xlsx, options=ExportOptions(lang="en"))
    book = openpyxl.load_workbook(xlsx)
    head, province, total = list(book["Provinces"].iter_rows(values_only=True))
    got = dict(zip(head, province, strict=True))
    assert (got["schools_need_measured"], got["schools_need_assumed"]) == (1, 2)
    assert got["province"] == CB
    assert (got["bandwidth_gap_measured_mbps"], got["bandwidth_gap_assumed_mbps"]) == (12, 20)
    assert (got["computers_gap_measured"], got["computers_gap_assumed"]) == (8, 40)
    assert total[1:] == province[1:]
    assert [r[0] for r in book["Budget"].iter_rows(min_row=2, values_only=True)] == ["A"]
    assert [r[0] for r in book["Survey"].iter_rows(min_row=2, values_only=True)] == ["B", "C"]


@pytest.mark.parametrize("students", [25, 400, 2500])
def test_no_evidence_never_outranks_measured_need_of_the_same_size(students: int) -> None:
    """The smallest measured need (a 1-computer gap) against the largest assumed one."""
    small = School("M", "m", CB, "x", "primary", 22.8, 105.5, students)
    never = School("N", "n", CB, "x", "primary", 22.8, 105.5, students)
    required = -(-students // 20)
    devices = [
        DeviceRow("M", f"pc{i}", NOW, NOW, 8192, 4, "Windows", "11 25H2 Pro", None, "desktop", None)
        for i in range(required - 1)
    ]
    tests = [BandwidthRow("M", "d", NOW - timedelta(hours=1), 500.0, 100.0, 5.0, None, False)]
    snap = compute([small, never], {"M": NOW}, tests, devices, [], load_policy(), NOW)
    m, n = snap.schools["M"], snap.schools["N"]
    assert m.need == "measured" and m.computers_gap == 1 and n.priority_assumed > m.priority
    assert [s.school_id for s in snap.by_priority()] == ["M", "N"]
