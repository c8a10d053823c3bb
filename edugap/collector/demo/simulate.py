"""Fleet simulator: protocol-valid, backdated reports of every school of a simulated fleet.

`fleet_reports` turns the schools of `edugap.collector.demo.fleet` into (topic, payload) pairs
built with the agent's own protocol classes, backdated over the last `days` so 7-day statistics are
meaningful at once. The same generator feeds `edugap simulate`, `edugap demo` and the benchmarks;
`edugap.collector.demo.bulk_publish.Publisher` sends them.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edugap.collector.demo.bulk_publish import Message
from edugap.collector.demo.fleet import SimSchool
from edugap.protocol.messages import (
    Bandwidth,
    Battery,
    CpuInfo,
    Disk,
    Heartbeat,
    Inventory,
    NetInterface,
    OsInfo,
    Report,
    TargetCheck,
    encode,
    topic_for,
)

AGENT_VERSION = "0.1.0+sim"
# (name, version, end of support, out of support on the simulated dates)
OsEntry = tuple[str, str, str | None, bool]
OS_MODERN: tuple[OsEntry, ...] = (
    ("Windows 11 Pro", "10.0.22631", None, False),
    ("Ubuntu 22.04.4 LTS", "22.04", "2027-04-30", False),
    ("Ubuntu 24.04.1 LTS", "24.04", "2029-04-30", False),
)
OS_AGEING: tuple[OsEntry, ...] = (("Windows 10 Pro", "10.0.19045", "2025-10-14", True),)
OS_OLD: tuple[OsEntry, ...] = (
    ("Windows 7 Professional", "6.1.7601", "2020-01-14", True),
    ("Windows 8.1 Pro", "6.3.9600", "2023-01-10", True),
)
CPU_MODERN = (
    "Intel(R) Core(TM) i3-10100 CPU @ 3.60GHz",
    "AMD Ryzen 5 5600G",
    "Intel(R) Core(TM) i5-8500",
)
CPU_OLD = ("Intel(R) Pentium(R) CPU G630 @ 2.70GHz", "Intel(R) Celeron(R) CPU J1800 @ 2.41GHz")
SERVERS = {
    "north": "Viettel - Hà Nội",
    "central": "VNPT - Đà Nẵng",
    "south": "FPT - TP. Hồ Chí Minh",
}
# School hours, 07:00 to 17:00 in Vietnam (UTC+7), are 00:00 to 10:00 UTC.
SCHOOL_HOURS_UTC = (0.0, 10.0)


@dataclass(frozen=True, slots=True)
class Plan:
    """How many reports to make and over which period."""

    now: datetime
    days: float = 7.0
    tests_per_day: float = 2.0  # bandwidth tests per school per day
    heartbeats_per_day: float = 2.0  # hourly heartbeat summaries per school per day
    failure_rate: float = 0.03  # share of speed tests that fail with an error

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("plan time must be timezone-aware (UTC)")
        for name in ("days", "tests_per_day", "heartbeats_per_day"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _report_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _count(rng: random.Random, mean: float) -> int:
    """An integer count whose average is `mean` (the fraction decided by chance)."""
    whole = math.floor(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


def _school_time(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A time between start and end, during school hours when the window allows it."""
    span = (end - start).total_seconds()
    t = start + timedelta(seconds=rng.uniform(0, span))
    for _ in range(4):
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        hours = rng.uniform(*SCHOOL_HOURS_UTC)
        candidate = day + timedelta(hours=hours)
        if start <= candidate <= end and candidate.weekday() != 6:  # no lessons on Sunday
            return candidate.replace(microsecond=0)
        t = start + timedelta(seconds=rng.uniform(0, span))
    return t.replace(microsecond=0)


def _region(lat: float) -> str:
    return "north" if lat > 18.5 else "central" if lat > 12.5 else "south"


@dataclass(slots=True)
class _Device:
    device_id: str
    os: OsEntry
    cpu: str
    cores: int
    memory_mb: int
    laptop: bool


def _devices(sim: SimSchool, rng: random.Random) -> list[_Device]:
    equipment = sim.profile.equipment
    # One in four schools with working equipment still runs some Windows 10.
    ageing = equipment != "old" and rng.random() < 0.25
    devices = []
    for device_id in sim.device_ids:
        if equipment == "old" and rng.random() < 0.85:
            os = rng.choice(OS_OLD)
            cpu, cores = rng.choice(CPU_OLD), rng.choice((1, 2, 2))
            memory = rng.choice((1024, 2048, 2048, 3072))
        else:
            os = rng.choice(OS_AGEING if ageing and rng.random() < 0.5 else OS_MODERN)
            cpu, cores = rng.choice(CPU_MODERN), rng.choice((2, 4, 4, 6))
            memory = rng.choice((4096, 8192, 8192, 16384))
        devices.append(_Device(device_id, os, cpu, cores, memory, rng.random() < 0.2))
    return devices


def _inventory(sim: SimSchool, dev: _Device, at: datetime, rng: random.Random) -> Inventory:
    name, version, eos, out = dev.os
    total = rng.choice((120.0, 240.0, 500.0, 1000.0))
    return Inventory(
        report_id=_report_id(rng),
        school_id=sim.school.school_id,
        device_id=dev.device_id,
        measured_at=at,
        agent_version=AGENT_VERSION,
        os=OsInfo(name=name, version=version, end_of_support=eos, out_of_support=out),
        cpu=CpuInfo(model=dev.cpu, cores=dev.cores, threads=dev.cores * 2),
        memory_mb=dev.memory_mb,
        disks=[
            Disk(
                mount="C:\\" if name.startswith("Windows") else "/",
                total_gb=total,
                free_gb=round(total * rng.uniform(0.05, 0.7), 1),
            )
        ],
        net=[
            NetInterface(
                name="wlan0" if dev.laptop else "eth0",
                kind="wifi" if dev.laptop else "wired",
                speed_mbps=300.0 if dev.laptop else rng.choice((100.0, 1000.0)),
                up=True,
            )
        ],
        battery=Battery(
            percent=round(rng.uniform(20, 100), 0), health_pct=round(rng.uniform(40, 100), 0)
        )
        if dev.laptop
        else None,
        boot_time=at - timedelta(hours=rng.uniform(0.2, 9)),
        machine_kind="laptop" if dev.laptop else "desktop",
        hardware_hash=hashlib.sha256(dev.device_id.encode()).hexdigest(),
    )


def _bandwidth(
    sim: SimSchool, device_id: str, at: datetime, rng: random.Random, plan: Plan
) -> Bandwidth:
    p = sim.profile
    failed = rng.random() < plan.failure_rate
    down = p.download_mbps * rng.lognormvariate(0, 0.25)
    up = down * p.upload_ratio * rng.lognormvariate(0, 0.2)
    latency = p.latency_ms * rng.lognormvariate(0, 0.2)
    return Bandwidth(
        report_id=_report_id(rng),
        school_id=sim.school.school_id,
        device_id=device_id,
        measured_at=at,
        agent_version=AGENT_VERSION,
        backend="speedtest.net",
        server=SERVERS[_region(sim.school.lat)],
        download_mbps=None if failed else round(down, 3),
        upload_mbps=None if failed else round(up, 3),
        latency_ms=None if failed else round(latency, 1),
        jitter_ms=None if failed else round(latency * rng.uniform(0.02, 0.3), 1),
        # about ten seconds each way; a failed test used a little before it gave up
        bytes_used=rng.randint(0, 50_000) if failed else int((down + up) * 1e6 / 8 * 10),
        error="speed test failed: timed out" if failed else None,
        link_rx_mbps=None if failed else round(down * rng.uniform(0.0, 0.3), 3),
        link_tx_mbps=None if failed else round(up * rng.uniform(0.0, 0.2), 3),
    )


def _heartbeat(sim: SimSchool, device_id: str, at: datetime, rng: random.Random) -> Heartbeat:
    p = sim.profile
    checks = 60  # one availability check a minute over the hour the heartbeat covers
    failed = min(checks, round(checks * p.downtime * rng.uniform(0, 2)))
    ok = checks - failed
    latency = round(p.latency_ms * rng.lognormvariate(0, 0.2), 1) if ok else None
    return Heartbeat(
        report_id=_report_id(rng),
        school_id=sim.school.school_id,
        device_id=device_id,
        measured_at=at,
        agent_version=AGENT_VERSION,
        latency_ms=latency,
        reachable=ok > 0,
        period_seconds=3600,
        checks=checks,
        checks_ok=ok,
        loss_pct=round(100 * failed / checks, 1),
        targets=[TargetCheck(target="collector", checks=checks, ok=ok, latency_ms=latency)],
        queue_depth=0 if ok == checks else rng.randint(0, 5),
        dropped_reports=0,
    )


def school_reports(sim: SimSchool, plan: Plan, seed: int = 1) -> list[Report]:
    """Every report one simulated school sends over the plan's period, oldest first."""
    p = sim.profile
    if p.monitoring == "never":
        return []
    rng = random.Random(f"edugap-reports:{seed}:{sim.school.school_id}")
    end = plan.now - timedelta(days=p.last_report_days)
    start = end - timedelta(days=plan.days)
    devices = _devices(sim, rng)
    reports: list[Report] = []
    for dev in devices:
        # Agents send an inventory every few hours; only the newest counts, so one per device.
        at = (end - timedelta(hours=rng.uniform(0, min(12.0, plan.days * 24)))).replace(
            microsecond=0
        )
        reports.append(_inventory(sim, dev, at, rng))
    for _ in range(_count(rng, plan.tests_per_day * plan.days)):
        dev = rng.choice(devices)
        reports.append(_bandwidth(sim, dev.device_id, _school_time(rng, start, end), rng, plan))
    for _ in range(_count(rng, plan.heartbeats_per_day * plan.days)):
        dev = rng.choice(devices)
        reports.append(_heartbeat(sim, dev.device_id, _school_time(rng, start, end), rng))
    reports.sort(key=lambda r: r.measured_at)
    return reports


def fleet_reports(
    fleet: Iterable[SimSchool],
    plan: Plan,
    seed: int = 1,
    on_school: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """(topic, payload) for every report of the fleet, school after school."""
    for n, sim in enumerate(fleet, 1):
        for report in school_reports(sim, plan, seed):
            yield topic_for(report.school_id, report.device_id, report.kind), encode(report)
        if on_school:
            on_school(n)


def plan_now() -> datetime:
    """The current UTC time to the second (the default `Plan.now`)."""
    return datetime.now(UTC).replace(microsecond=0)
