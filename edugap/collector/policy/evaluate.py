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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    SHORTFALL_KINDS,
    SPEEDTEST_STATES,
    AreaSummary,
    BandwidthRow,
    Connectivity,
    DeviceCounts,
    DeviceRow,
    HeartbeatHour,
    Monitoring,
    School,
    SchoolStatus,
    Snapshot,
    SpeedTests,
    SpeedtestState,
    Store,
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


def _group_tests(rows: Iterable[BandwidthRow], since: datetime) -> dict[str, SpeedTests]:
    tests: dict[str, SpeedTests] = defaultdict(SpeedTests)
    for r in rows:
        down = r.download_mbps
        if r.skipped or r.measured_at < since:
            continue
        t = tests[r.school_id]
        if down is None or r.error is not None:
            t.failed += 1
            continue
        t.down.append(down)
        if r.upload_mbps is not None:
            t.up.append(r.upload_mbps)
        if r.latency_ms is not None:
            t.latency.append(r.latency_ms)
        if t.newest is None or r.measured_at > t.newest:
            t.newest = r.measured_at
    return tests


def _group_devices(
    rows: Iterable[DeviceRow], live_since: datetime, p: Policy
) -> dict[str, DeviceCounts]:
    devices: dict[str, DeviceCounts] = defaultdict(DeviceCounts)
    min_memory = p.min_memory_mb
    for d in rows:
        if d.last_seen < live_since:
            continue  # not live: neither reporting nor usable
        g = devices[d.school_id]
        g.reporting += 1
        if (d.memory_mb or 0) >= min_memory and (d.cpu_cores or 0) >= p.min_cores:
            g.usable += 1
        if d.out_of_support:
            g.out_of_support += 1
        if d.clock_off:
            g.clock_off += 1
        if d.speed_tester:
            g.speed_testers += 1
    return devices


def school_hour_starts(since: datetime, now: datetime, p: Policy) -> frozenset[datetime]:
    """UTC starts of the whole hours in [since, now) that start within school hours and days.

    An hour counts when it starts within school hours in the policy's time zone (07:00 counts,
    17:00 does not for "07:00-17:00"). A store can sum its heartbeat hours over this set.
    """
    zone, (start, end), days = p.zone, p.hours, p.weekdays
    first = since.replace(minute=0, second=0, microsecond=0)
    if first < since:
        first += timedelta(hours=1)  # the hour holding `since` is only partly in the window
    hours: set[datetime] = set()
    at = first
    while at < now:
        local = at.astimezone(zone)
        if local.weekday() in days and start <= local.time() < end:
            hours.add(at)
        at += timedelta(hours=1)
    return frozenset(hours)


def _heartbeat_sums(
    rows: Iterable[HeartbeatHour], school_hours: frozenset[datetime]
) -> dict[str, list[int]]:
    """Per school: [min(checks_ok, checks), checks] summed over the hours in `school_hours`."""
    sums: dict[str, list[int]] = {}
    get = sums.get
    for h in rows:
        if h.hour not in school_hours or h.checks <= 0:
            continue
        s = get(h.school_id)
        if s is None:
            sums[h.school_id] = [min(h.checks_ok, h.checks), h.checks]
        else:
            s[0] += min(h.checks_ok, h.checks)
            s[1] += h.checks
    return sums


def _uptime(sums: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Per school: 100 x checks_ok / checks."""
    return {school: 100.0 * ok / checks for school, (ok, checks) in sums.items() if checks > 0}


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
    if connectivity == "unknown" or download is None:
        gap = required if p.unknown_gap == "full" else 0.0
    else:
        gap = max(0.0, required - download)

    contracted = school.contracted_mbps if school else None
    compliant = None
    if contracted is not None and download is not None and connectivity != "unknown":
        compliant = download >= p.compliance_share * contracted

    monitoring = _monitoring(last, cut)
    dev = devices or _NO_DEVICES
    computers_required: int | None = None
    if school is not None:
        computers_required = (
            school.computers_required
            if school.computers_required is not None
            else math.ceil(school.students / p.students_per_computer)
        )
    computers_gap = max(0, (computers_required or 0) - dev.usable)

    not_monitored = monitoring == "drop_off" or monitoring == "never"
    # in SHORTFALL_KINDS order (a test checks it)
    found: list[str] = []
    if connectivity == "moderate" or connectivity == "bad":
        found.append("bandwidth")
    if computers_gap > 0:
        found.append("computers")
    if uptime is not None and uptime < p.target_pct:
        found.append("availability")
    if compliant is False:
        found.append("isp_contract")
    if dev.out_of_support > 0:
        found.append("os_upgrade")
    if not_monitored:
        found.append("not_monitored")

    need = (
        p.bandwidth * (gap / required if required > 0 else 0.0)
        + p.computers * (computers_gap / computers_required if computers_required else 0.0)
        + p.availability
        * (max(0.0, p.target_pct - uptime) / p.target_pct if uptime is not None else 0.0)
        + p.os_upgrade * (dev.out_of_support / dev.reporting if dev.reporting else 0.0)
        + p.not_monitored * (1.0 if not_monitored else 0.0)
    )
    priority = round(100.0 * need * max(students or 1, 1) ** p.students_exponent, 2)

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
        os_out_of_support=dev.out_of_support,
        bandwidth_gap_mbps=gap,
        shortfalls=tuple(found),
        priority=priority,
        speedtest=_speedtest(tests, dev),
        speed_testers=dev.speed_testers,
        tests_failed_7d=tests.failed if tests else 0,
    )


@dataclass(slots=True)
class _Area:
    schools: int = 0
    by_connectivity: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(CONNECTIVITY_CLASSES, 0)
    )
    by_monitoring: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(MONITORING_STATES, 0)
    )
    shortfalls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHORTFALL_KINDS, 0))
    bandwidth_gap: float = 0.0
    computers_gap: int = 0
    computers_usable: int = 0
    computers_required: int = 0
    os_out_of_support: int = 0
    by_speedtest: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPEEDTEST_STATES, 0))

    def add(self, s: SchoolStatus) -> None:
        self.schools += 1
        self.by_speedtest[s.speedtest] += 1
        self.by_connectivity[s.connectivity] += 1
        self.by_monitoring[s.monitoring] += 1
        for kind in s.shortfalls:
            self.shortfalls[kind] += 1
        self.bandwidth_gap += s.bandwidth_gap_mbps
        self.computers_gap += s.computers_gap
        self.computers_usable += s.computers_usable
        self.computers_required += s.computers_required or 0
        self.os_out_of_support += s.os_out_of_support

    def summary(self, province: str, commune: str | None) -> AreaSummary:
        return AreaSummary(
            province=province,
            commune=commune,
            schools=self.schools,
            by_connectivity=self.by_connectivity,
            by_monitoring=self.by_monitoring,
            shortfalls=self.shortfalls,
            bandwidth_gap_mbps=round(self.bandwidth_gap, 3),
            computers_gap=self.computers_gap,
            computers_usable=self.computers_usable,
            computers_required=self.computers_required,
            os_out_of_support=self.os_out_of_support,
            by_speedtest=self.by_speedtest,
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
    return assemble(
        schools,
        last_reports,
        _group_tests(bandwidth, window_start),
        _group_devices(devices, now - timedelta(days=policy.live_days), policy),
        _uptime(_heartbeat_sums(heartbeat_hours, hours)),
        policy,
        now,
        reporting,
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
        uptime=_uptime(store.heartbeat_sums(hours)),
        policy=policy,
        now=now,
        reporting=store.reporting_school_ids(),
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
) -> Snapshot:
    """The snapshot from per-school aggregates: the registry plus every school that reported."""
    registry = {s.school_id: s for s in schools}
    ids = set(registry)
    ids.update(last_reports, tests, devices, uptime, reporting)

    cut = _Cutoffs.at(now, policy)
    statuses: dict[str, SchoolStatus] = {}
    provinces: dict[str, _Area] = defaultdict(_Area)
    communes: dict[tuple[str, str], _Area] = defaultdict(_Area)
    for school_id in sorted(ids):
        school = registry.get(school_id)
        status = _school_status(
            school,
            school_id,
            tests.get(school_id),
            devices.get(school_id),
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
    )
