"""Builders of valid protocol v1 reports for collector tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime

from edugap.collector.model import Received
from edugap.protocol.messages import (
    Bandwidth,
    CpuInfo,
    Disk,
    Heartbeat,
    Inventory,
    NetInterface,
    OsInfo,
    Status,
    new_report_id,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def bandwidth(
    school: str = "SCH-1",
    device: str = "dev-1",
    at: datetime = T0,
    down: float | None = 25.0,
    *,
    report_id: str | None = None,
    error: str | None = None,
) -> Bandwidth:
    return Bandwidth(
        report_id=report_id or new_report_id(),
        school_id=school,
        device_id=device,
        measured_at=at,
        agent_version="0.1.0",
        download_mbps=None if error else down,
        upload_mbps=None if error else 5.0,
        latency_ms=None if error else 30.0,
        bytes_used=1000,
        backend="selfhosted",
        server="http://127.0.0.1/speedtest",
        error=error,
    )


def heartbeat(
    school: str = "SCH-1",
    device: str = "dev-1",
    at: datetime = T0,
    *,
    checks: int = 0,
    ok: int = 0,
    reachable: bool = True,
) -> Heartbeat:
    return Heartbeat(
        report_id=new_report_id(),
        school_id=school,
        device_id=device,
        measured_at=at,
        agent_version="0.1.0",
        latency_ms=12.0,
        reachable=reachable,
        checks=checks,
        checks_ok=ok,
        queue_depth=0,
        dropped_reports=0,
    )


def inventory(
    school: str = "SCH-1",
    device: str = "dev-1",
    at: datetime = T0,
    *,
    memory_mb: int = 8192,
    cores: int = 4,
    os_name: str = "Windows",
    os_version: str = "11",
) -> Inventory:
    return Inventory(
        report_id=new_report_id(),
        school_id=school,
        device_id=device,
        measured_at=at,
        agent_version="0.1.0",
        os=OsInfo(name=os_name, version=os_version, out_of_support=False),
        cpu=CpuInfo(model="Intel", cores=cores, threads=cores * 2),
        memory_mb=memory_mb,
        disks=[Disk(mount="C:", total_gb=256.0, free_gb=100.0)],
        net=[NetInterface(name="eth0", kind="wired", speed_mbps=1000.0, up=True)],
        battery=None,
        boot_time=None,
        machine_kind="desktop",
        hardware_hash="abc",
    )


def status(school: str = "SCH-1", device: str = "dev-1", at: datetime = T0) -> Status:
    return Status(
        report_id=new_report_id(),
        school_id=school,
        device_id=device,
        measured_at=at,
        agent_version="0.1.0",
        state="online",
    )


def received(
    report: Bandwidth | Heartbeat | Inventory | Status, at: datetime | None = None
) -> Received:
    return Received(report=report, received_at=at or report.measured_at)
