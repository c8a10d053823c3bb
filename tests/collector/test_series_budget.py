"""At most 10 series per school by default, over a fleet the real policy evaluates.

The bound follows from the policy (docs/metrics.md, "Series per school"): info, download,
priority, connectivity and monitoring are one series each, plus one per shortfall the school
has. `bandwidth` and `isp_contract` need a test within the 7-day window, `availability`
heartbeats within it, `computers` and `os_upgrade` an inventory from a live device: each is a
report within the live window, so none of them can come with `not_monitored` (no report for 28
days). At most five kinds at once, 10 series.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edugap.collector.model import (
    SHORTFALL_KINDS,
    BandwidthRow,
    DeviceRow,
    HeartbeatHour,
    IngestStats,
    School,
    Snapshot,
)
from edugap.collector.policy.evaluate import compute, evaluate
from edugap.collector.policy.rules import load_policy
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.store import open_store
from edugap.protocol.messages import AnyReport
from tests.collector import reports

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, 19:00 in Hà Nội
MON = datetime(2026, 11, 23, tzinfo=UTC)  # Monday 07:00 in Hà Nội: school hours
HN = "Thành phố Hà Nội"


def facts(sid: str, rng: random.Random) -> tuple[list[BandwidthRow], list[DeviceRow],
                                                 list[HeartbeatHour], datetime | None]:  # fmt: skip
    """A random mix of the evidence a school can have, of every age; its last report is the
    newest of it, as a store would have it."""
    tests = []
    age = rng.choice([None, timedelta(hours=5), timedelta(days=10), timedelta(days=30)])
    if age is not None:
        down = rng.choice([0.5, 10.0, 150.0])
        tests.append(BandwidthRow(sid, "a", NOW - age, down, down / 2, 30.0, None, False))
    devices = []
    age = rng.choice([None, timedelta(days=1), timedelta(days=25), timedelta(days=40)])
    if age is not None:
        at = NOW - age
        for i in range(rng.choice([1, 3])):
            os_version = rng.choice(["11 25H2 Pro", "10 22H2 Pro"])  # 10 is out of support
            devices.append(DeviceRow(sid, f"d{i}", at, at, rng.choice([2048, 8192]), 4,
                                     "Windows", os_version, None, "desktop", None))  # fmt: skip
    hours = []
    start = rng.choice([None, MON, MON - timedelta(days=20)])
    if start is not None:
        ok = rng.choice([50, 100])
        hours = [HeartbeatHour(sid, start + timedelta(hours=h), 1, 100, ok) for h in range(8)]
    times = [t.measured_at for t in tests] + [d.last_seen for d in devices]
    times += [h.hour for h in hours]
    status = rng.choice([None, timedelta(hours=1), timedelta(days=25), timedelta(days=40)])
    if status is not None:
        times.append(NOW - status)
    return tests, devices, hours, max(times, default=None)


def every_possible_shortfall(sid: str) -> tuple[list[BandwidthRow], list[DeviceRow],
                                                list[HeartbeatHour], datetime]:  # fmt: skip
    """Slow against its contract, too few usable computers, an old OS, often down."""
    tests = [BandwidthRow(sid, "a", NOW - timedelta(hours=2), 5.0, 2.0, 40.0, None, False)]
    devices = [DeviceRow(sid, "a", NOW - timedelta(days=1), NOW - timedelta(hours=1), 8192, 4,
                         "Windows", "10 22H2 Pro", None, "desktop", None)]  # fmt: skip
    hours = [HeartbeatHour(sid, MON + timedelta(hours=h), 1, 100, 50) for h in range(8)]
    return tests, devices, hours, NOW - timedelta(hours=1)


def fleet(n: int) -> Snapshot:
    rng = random.Random(13)
    schools, bandwidth, devices, hours, last = [], [], [], [], {}
    for i in range(n):
        sid = f"S{i:04d}"
        schools.append(School(sid, f"Trường {sid}", HN, "Phường Ba Đình", "primary", 21.0, 105.8,
                              rng.choice([50, 400, 1500]), computers_required=rng.choice([1, 30]),
                              contracted_mbps=rng.choice([None, 8.0, 200.0])))  # fmt: skip
        t, d, h, at = every_possible_shortfall(sid) if i == 0 else facts(sid, rng)
        bandwidth += t
        devices += d
        hours += h
        if at is not None:
            last[sid] = at
    return compute(schools, last, bandwidth, devices, hours, load_policy(), NOW)


def series_per_school(snap: Snapshot, detail: bool) -> Counter[str]:
    holder = SnapshotHolder()
    holder.publish(snap, 0.1)
    body = b"".join(Exposition(holder, IngestStats(), school_detail=detail).text()).decode()
    count: Counter[str] = Counter()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if "school_id" in s.labels:
                count[s.labels["school_id"]] += 1
    return count


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return fleet(600)


def test_the_fleet_has_every_kind_and_a_school_with_every_possible_one(snap: Snapshot) -> None:
    kinds = Counter(k for s in snap.schools.values() for k in s.shortfalls)
    assert set(kinds) == set(SHORTFALL_KINDS)
    worst = snap.schools["S0000"].shortfalls
    assert set(worst) == set(SHORTFALL_KINDS) - {"not_monitored"}
    # the policy's reason for the bound: not monitored means no evidence for any other kind
    for s in snap.schools.values():
        if "not_monitored" in s.shortfalls:
            assert s.shortfalls == ("not_monitored",), s


def test_at_most_ten_series_per_school_by_default(snap: Snapshot) -> None:
    count = series_per_school(snap, detail=False)
    assert len(count) == len(snap.schools)
    assert max(count.values()) == count["S0000"] == 10
    for sid, n in count.items():
        assert n <= 10, sid
    # the average fleet is well under the bound
    assert sum(count.values()) / len(count) < 8


def test_detail_mode_serves_every_gauge(snap: Snapshot) -> None:
    count = series_per_school(snap, detail=True)
    assert min(count.values()) > 10


def test_a_real_store_reaches_the_same_bound(tmp_path: Path) -> None:
    """The same through SQLite's evaluate(): the store's last report is the newest of every
    report, so old evidence cannot come with a school that is not monitored."""
    store = open_store(str(tmp_path / "edugap.db"))
    try:
        store.upsert_schools([
            School("WORST", "Trường W", HN, "Phường Ba Đình", "primary", 21.0, 105.8, 400,
                   computers_required=30, contracted_mbps=200.0),
            School("STALE", "Trường S", HN, "Phường Ba Đình", "primary", 21.0, 105.8, 400,
                   computers_required=30, contracted_mbps=200.0),
        ])  # fmt: skip
        batch: list[AnyReport] = []
        for sid, days in (("WORST", 0.0), ("STALE", 30.0)):
            at = NOW - timedelta(days=days, hours=2)
            week = MON - timedelta(days=days)
            batch += [
                reports.bandwidth(sid, "a", at, 5.0),
                reports.inventory(sid, "a", at, os_version="10 22H2 Pro"),
                *(reports.heartbeat(sid, "a", week + timedelta(hours=h), checks=100, ok=50)
                  for h in range(8)),
            ]  # fmt: skip
        store.save_batch([reports.received(r) for r in batch])
        snap = evaluate(store, load_policy(), NOW)
    finally:
        store.close()
    assert set(snap.schools["WORST"].shortfalls) == set(SHORTFALL_KINDS) - {"not_monitored"}
    assert snap.schools["STALE"].shortfalls == ("not_monitored",)
    count = series_per_school(snap, detail=False)
    assert count["WORST"] == 10
    assert count["STALE"] == 5  # info, priority, class, monitoring, one shortfall; no download
