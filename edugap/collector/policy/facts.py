"""Facts folded per school from stored rows (what `compute` does in memory and a store's
aggregate reads do in the database), and the inventories judged against the OS table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from edugap.collector.model import (
    BandwidthRow,
    DeviceCounts,
    DeviceRow,
    HeartbeatHour,
    OsRelease,
    SpeedTests,
)
from edugap.collector.policy.rules import Policy
from edugap.protocol.lifecycle import Lifecycle, lookup


def group_tests(rows: Iterable[BandwidthRow], since: datetime) -> dict[str, SpeedTests]:
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


def group_devices(
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


def group_os(rows: Iterable[DeviceRow], live_since: datetime) -> dict[str, dict[OsRelease, int]]:
    """Per school, live devices that sent an inventory, by OS name and version."""
    found: dict[str, dict[OsRelease, int]] = defaultdict(dict)
    for d in rows:
        if d.last_seen < live_since or d.inventory_at is None:
            continue
        counts = found[d.school_id]
        release = (d.os_name or "", d.os_version or "")
        counts[release] = counts.get(release, 0) + 1
    return found


@dataclass(frozen=True, slots=True)
class Inventory:
    """What one school's recent inventories say: how many, and how many run an OS past its
    vendor's end of support according to the collector's table (not the agents' flags)."""

    devices: int = 0
    out_of_support: int = 0


def inventories(
    device_os: Mapping[str, Mapping[OsRelease, int]], table: Sequence[Lifecycle], today: date
) -> dict[str, Inventory]:
    """Per school, its inventoried devices and those out of support on `today`; each distinct
    OS release is looked up once (a nation has a few dozen)."""
    rows = tuple(table)
    out: dict[OsRelease, bool] = {}
    found: dict[str, Inventory] = {}
    for school_id, releases in device_os.items():
        devices = unsupported = 0
        for release, count in releases.items():
            gone = out.get(release)
            if gone is None:
                row = lookup(release[0], release[1], rows) if release[0] else None
                gone = out[release] = row is not None and not row.supported_on(today)
            devices += count
            if gone:
                unsupported += count
        found[school_id] = Inventory(devices, unsupported)
    return found


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


def heartbeat_sums(
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


def uptime_of(sums: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Per school: 100 x checks_ok / checks."""
    return {school: 100.0 * ok / checks for school, (ok, checks) in sums.items() if checks > 0}
