"""Apply the shortfall policy to the stored facts: one `Snapshot` of every school and area.

`compute` is pure (rows in, snapshot out) so it can be tested and benchmarked without a store.
`evaluate` asks the `Store` for per-school aggregates instead of rows (the database sums the
heartbeat hours and counts the devices; only successful speed tests travel, as bare numbers),
so a national store does not become millions of Python objects. Both end in `assemble`, so
they reach the same conclusions. The rules and the priority formula are in docs/policy.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from edugap.collector.model import (
    BandwidthRow,
    Connectivity,
    DeviceCounts,
    DeviceRow,
    Evidence,
    HeartbeatHour,
    Monitoring,
    Need,
    OsRelease,
    School,
    SchoolStatus,
    Snapshot,
    SpeedTests,
    SpeedtestState,
    Store,
)
from edugap.collector.policy.areas import Area
from edugap.collector.policy.facts import (
    Inventory,
    group_devices,
    group_os,
    group_tests,
    heartbeat_sums,
    inventories,
    school_hour_starts,
    uptime_of,
)
from edugap.collector.policy.rules import Policy


def statistic(values: Sequence[float], name: str) -> float:
    """median, mean or pNN (linear interpolation between ranks) of non-empty `values`."""
    if name == "mean":
        return math.fsum(values) / len(values)
    q = 0.5 if name == "median" else int(name[1:]) / 100
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True, slots=True)
class _Cutoffs:
    """The policy's ages as moments, computed once per evaluation (not once per school)."""

    fresh: datetime  # a successful test at or after this keeps connectivity known
    live: datetime  # a report at or after this: live
    at_risk: datetime  # at or after this (and before `live`): at risk; before: drop-off

    @classmethod
    def at(cls, now: datetime, p: Policy) -> _Cutoffs:
        return cls(
            now - timedelta(days=p.unknown_after_days),
            now - timedelta(days=p.live_days),
            now - timedelta(days=p.drop_off_days),
        )


def _monitoring(last: datetime | None, cut: _Cutoffs) -> Monitoring:
    if last is None:
        return "never"
    if last >= cut.live:
        return "live"
    if last >= cut.at_risk:
        return "at_risk"
    return "drop_off"


_NO_DEVICES = DeviceCounts()
_NO_INVENTORY = Inventory()


def _bandwidth_gap(
    required: float, download: float | None, connectivity: Connectivity, p: Policy
) -> tuple[float, Evidence]:
    """The Mbps missing and what it rests on: a fresh test, or the rule for no measurement."""
    if connectivity != "unknown" and download is not None:
        return max(0.0, required - download), "measured"
    if p.unknown_gap == "full":
        return required, "assumed"
    return 0.0, "absent"


def _computers_gap(
    required: int | None, usable: int, inventory: Inventory, p: Policy
) -> tuple[int, Evidence]:
    """The computers missing and what it rests on: a recent inventory, or the rule for none."""
    if inventory.devices > 0:
        return max(0, (required or 0) - usable), "measured"
    if p.no_inventory_gap == "full" and required is not None:
        return max(0, required - usable), "assumed"
    return 0, "absent"


def _speedtest(tests: SpeedTests | None, dev: DeviceCounts) -> SpeedtestState:
    """Where the school's speed tests stand: a school nobody designated a tester for is told
    apart from one whose tests fail (a province sees where to ask for a designation)."""
    if tests is not None and tests.down:
        return "measured"
    if tests is not None and tests.failed:
        return "failing"
    if dev.speed_testers:
        return "waiting"
    return "no_tester" if dev.reporting else "no_agents"


def _school_status(
    school: School | None,
    school_id: str,
    tests: SpeedTests | None,
    devices: DeviceCounts | None,
    inventory: Inventory | None,
    uptime: float | None,
    last: datetime | None,
    p: Policy,
    cut: _Cutoffs,
) -> SchoolStatus:
    students = school.students if school else None
    # an unregistered school's size is unknown: hold it to the per-school floor
    required = p.required_mbps(students or 0)
    download = upload = latency = None
    connectivity: Connectivity = "unknown"
    if tests is not None and tests.down:
        download = statistic(tests.down, p.statistic)
        upload = statistic(tests.up, p.statistic) if tests.up else None
        latency = statistic(tests.latency, p.statistic) if tests.latency else None
        if tests.newest is not None and tests.newest >= cut.fresh:
            if download >= required:
                connectivity = "good"
            elif download >= p.bad_below_mbps:
                connectivity = "moderate"
            else:
                connectivity = "bad"
    gap, bandwidth_evidence = _bandwidth_gap(required, download, connectivity, p)

    contracted = school.contracted_mbps if school else None
    compliant = None
    if contracted is not None and download is not None and connectivity != "unknown":
        compliant = download >= p.compliance_share * contracted

    monitoring = _monitoring(last, cut)
    dev = devices or _NO_DEVICES
    inv = inventory or _NO_INVENTORY
    computers_required: int | None = None
    if school is not None:
        computers_required = (
            school.computers_required
            if school.computers_required is not None
            else math.ceil(school.students / p.students_per_computer)
        )
    computers_gap, computers_evidence = _computers_gap(computers_required, dev.usable, inv, p)
    availability_evidence: Evidence = "absent" if uptime is None else "measured"

    not_monitored = monitoring == "drop_off" or monitoring == "never"
    # in SHORTFALL_KINDS order (a test checks it); each is a finding from evidence
    found: list[str] = []
    if connectivity == "moderate" or connectivity == "bad":
        found.append("bandwidth")
    if computers_gap > 0 and computers_evidence == "measured":
        found.append("computers")
    if uptime is not None and uptime < p.target_pct:
        found.append("availability")
    if compliant is False:
        found.append("isp_contract")
    if inv.out_of_support > 0:
        found.append("os_upgrade")
    if not_monitored:
        found.append("not_monitored")

    # the need from evidence and the need assumed for want of it, apart (docs/policy.md)
    bandwidth = p.bandwidth * (gap / required if required > 0 else 0.0)
    computers = p.computers * (computers_gap / computers_required if computers_required else 0.0)
    measured = (
        (bandwidth if bandwidth_evidence == "measured" else 0.0)
        + (computers if computers_evidence == "measured" else 0.0)
        + p.availability
        * (max(0.0, p.target_pct - uptime) / p.target_pct if uptime is not None else 0.0)
        + p.os_upgrade * (inv.out_of_support / inv.devices if inv.devices else 0.0)
    )
    assumed = (
        (bandwidth if bandwidth_evidence == "assumed" else 0.0)
        + (computers if computers_evidence == "assumed" else 0.0)
        + p.not_monitored * (1.0 if not_monitored else 0.0)
    )
    size = max(students or 1, 1) ** p.students_exponent
    need: Need = "none"
    if any(kind != "not_monitored" for kind in found):
        need = "measured"
    elif (
        not_monitored
        or (gap > 0 and bandwidth_evidence == "assumed")
        or (computers_gap > 0 and computers_evidence == "assumed")
    ):
        need = "assumed"

    return SchoolStatus(
        school_id=school_id,
        registered=school is not None,
        name=school.name if school else "",
        province=school.province if school else "",
        commune=school.commune if school else "",
        level=school.level if school else "",
        lat=school.lat if school else None,
        lon=school.lon if school else None,
        students=students,
        required_mbps=required,
        download_mbps=download,
        upload_mbps=upload,
        latency_ms=latency,
        tests_7d=len(tests.down) if tests else 0,
        connectivity=connectivity,
        uptime_pct=uptime,
        contracted_mbps=contracted,
        isp_compliant=compliant,
        monitoring=monitoring,
        last_report=last,
        devices_reporting=dev.reporting,
        devices_clock_off=dev.clock_off,
        computers_usable=dev.usable,
        computers_required=computers_required,
        computers_gap=computers_gap,
        os_out_of_support=inv.out_of_support,
        bandwidth_gap_mbps=gap,
        shortfalls=tuple(found),
        priority=round(100.0 * measured * size, 2),
        bandwidth_evidence=bandwidth_evidence,
        computers_evidence=computers_evidence,
        availability_evidence=availability_evidence,
        need=need,
        priority_assumed=round(100.0 * assumed * size, 2),
        speedtest=_speedtest(tests, dev),
        speed_testers=dev.speed_testers,
        tests_failed_7d=tests.failed if tests else 0,
    )


def compute(
    schools: Iterable[School],
    last_reports: dict[str, datetime],
    bandwidth: Iterable[BandwidthRow],
    devices: Iterable[DeviceRow],
    heartbeat_hours: Iterable[HeartbeatHour],
    policy: Policy,
    now: datetime,
    reporting: Iterable[str] = (),
) -> Snapshot:
    """The snapshot at `now` of the registry plus every school that reported (pure function)."""
    window_start = now - timedelta(days=policy.window_days)
    hours = school_hour_starts(window_start, now, policy)
    live_since = now - timedelta(days=policy.live_days)
    devices = list(devices)
    return assemble(
        schools,
        last_reports,
        group_tests(bandwidth, window_start),
        group_devices(devices, live_since, policy),
        uptime_of(heartbeat_sums(heartbeat_hours, hours)),
        policy,
        now,
        reporting,
        group_os(devices, live_since),
    )


def evaluate(store: Store, policy: Policy, now: datetime) -> Snapshot:
    """Ask `store` for the per-school aggregates the policy needs; the snapshot at `now`."""
    window_start = now - timedelta(days=policy.window_days)
    hours = school_hour_starts(window_start, now, policy)
    live_since = now - timedelta(days=policy.live_days)
    return assemble(
        schools=store.schools(),
        last_reports=store.last_report_per_school(),
        tests=store.speed_tests_since(window_start),
        devices=store.device_counts(live_since, policy.min_memory_mb, policy.min_cores),
        uptime=uptime_of(store.heartbeat_sums(hours)),
        policy=policy,
        now=now,
        reporting=store.reporting_school_ids(),
        device_os=store.device_os(live_since),
    )


def assemble(
    schools: Iterable[School],
    last_reports: Mapping[str, datetime],
    tests: Mapping[str, SpeedTests],
    devices: Mapping[str, DeviceCounts],
    uptime: Mapping[str, float],
    policy: Policy,
    now: datetime,
    reporting: Iterable[str] = (),
    device_os: Mapping[str, Mapping[OsRelease, int]] | None = None,
) -> Snapshot:
    """The snapshot from per-school aggregates: the registry plus every school that reported.

    `device_os` (`Store.device_os`) tells which schools have a recent inventory and, through
    the policy's OS table, how many of their computers are out of support on today's date in
    the policy's time zone."""
    registry = {s.school_id: s for s in schools}
    ids = set(registry)
    ids.update(last_reports, tests, devices, uptime, reporting)
    today = now.astimezone(policy.zone).date()
    inventory = inventories(device_os or {}, policy.os_table(), today)

    cut = _Cutoffs.at(now, policy)
    statuses: dict[str, SchoolStatus] = {}
    provinces: dict[str, Area] = defaultdict(Area)
    communes: dict[tuple[str, str], Area] = defaultdict(Area)
    for school_id in sorted(ids):
        school = registry.get(school_id)
        status = _school_status(
            school,
            school_id,
            tests.get(school_id),
            devices.get(school_id),
            inventory.get(school_id),
            uptime.get(school_id),
            last_reports.get(school_id),
            policy,
            cut,
        )
        statuses[school_id] = status
        if school is not None:  # an unregistered school has no place to be counted in
            provinces[school.province].add(status)
            communes[(school.province, school.commune)].add(status)
    return Snapshot(
        generated_at=now,
        schools=statuses,
        provinces=[provinces[p].summary(p, None) for p in sorted(provinces)],
        communes=[communes[k].summary(k[0], k[1]) for k in sorted(communes)],
        timezone=policy.timezone,
    )
