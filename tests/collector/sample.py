"""Snapshots built directly from edugap.collector.model dataclasses, for tests and benchmarks."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    SHORTFALL_KINDS,
    AreaSummary,
    SchoolStatus,
    Snapshot,
)
from edugap.collector.registry.places import default_places

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PROVINCES = ("Hà Nội", "Thành phố Hồ Chí Minh", "Đà Nẵng", 'Quảng "Ninh"')


def school(
    school_id: str,
    province: str = "Hà Nội",
    *,
    commune: str = "Phường Ba Đình",
    level: str = "primary",
    name: str | None = None,
    download: float | None = 12.5,
    required: float = 20.0,
    connectivity: str = "moderate",
    monitoring: str = "live",
    shortfalls: tuple[str, ...] = ("bandwidth",),
    registered: bool = True,
    computers_usable: int = 10,
    computers_required: int | None = 25,
    last_report: datetime | None = NOW - timedelta(hours=1),
) -> SchoolStatus:
    """One SchoolStatus with plausible values; override what the test is about."""
    return SchoolStatus(
        school_id=school_id,
        registered=registered,
        name=name if name is not None else f"Trường {school_id}",
        province=province if registered else "",
        commune=commune if registered else "",
        level=level if registered else "",
        lat=21.03 if registered else None,
        lon=105.83 if registered else None,
        students=400 if registered else None,
        required_mbps=required if registered else None,
        download_mbps=download,
        upload_mbps=None if download is None else download / 2,
        latency_ms=None if download is None else 35.0,
        tests_7d=0 if download is None else 5,
        connectivity=connectivity,  # type: ignore[arg-type]
        uptime_pct=99.5,
        contracted_mbps=None,
        isp_compliant=None,
        monitoring=monitoring,  # type: ignore[arg-type]
        last_report=last_report,
        devices_reporting=3,
        devices_clock_off=0,
        computers_usable=computers_usable,
        computers_required=computers_required,
        computers_gap=max(0, (computers_required or 0) - computers_usable),
        os_out_of_support=1,
        bandwidth_gap_mbps=max(0.0, required - (download or 0.0)),
        shortfalls=shortfalls,
        priority=1.0 + len(shortfalls),
        bandwidth_evidence="measured" if download is not None else "assumed",
        computers_evidence="measured",
        availability_evidence="measured",
        need=(
            "measured"
            if set(shortfalls) - {"not_monitored"}
            else ("assumed" if shortfalls or download is None else "none")
        ),
    )


def summarize(schools: list[SchoolStatus]) -> list[AreaSummary]:
    """Province summaries of registered schools, computed plainly."""
    out = []
    for province in sorted({s.province for s in schools if s.registered}):
        members = [s for s in schools if s.registered and s.province == province]
        out.append(
            AreaSummary(
                province=province,
                commune=None,
                schools=len(members),
                by_connectivity=dict(Counter(s.connectivity for s in members)),
                by_monitoring=dict(Counter(s.monitoring for s in members)),
                shortfalls=dict(Counter(k for s in members for k in s.shortfalls)),
                bandwidth_gap_mbps=sum(s.bandwidth_gap_mbps for s in members),
                computers_gap=sum(s.computers_gap for s in members),
                computers_usable=sum(s.computers_usable for s in members),
                computers_required=sum(s.computers_required or 0 for s in members),
                os_out_of_support=sum(s.os_out_of_support for s in members),
                bandwidth_gap_measured_mbps=sum(
                    s.bandwidth_gap_mbps for s in members if s.bandwidth_evidence == "measured"
                ),
                bandwidth_gap_assumed_mbps=sum(
                    s.bandwidth_gap_mbps for s in members if s.bandwidth_evidence == "assumed"
                ),
                computers_gap_measured=sum(s.computers_gap for s in members),
                by_need=dict(Counter(s.need for s in members)),
            )
        )
    return out


def snapshot(schools: list[SchoolStatus], generated_at: datetime = NOW) -> Snapshot:
    return Snapshot(
        generated_at=generated_at,
        schools={s.school_id: s for s in schools},
        provinces=summarize(schools),
        communes=[],
    )


def national(n: int, provinces: int = 34, seed: int = 7) -> Snapshot:
    """A snapshot of n schools spread over the first `provinces` official provinces, with
    varied values."""
    rng = random.Random(seed)
    names = [p.name for p in default_places().provinces[:provinces]]
    schools = []
    for i in range(n):
        download = None if rng.random() < 0.1 else round(rng.uniform(0.2, 80.0), 2)
        kinds = tuple(k for k in SHORTFALL_KINDS if rng.random() < 0.3)
        schools.append(
            school(
                f"S{i:06d}",
                names[i % provinces],
                commune=f"Xã {i % 97}",
                level=rng.choice(("primary", "lower_secondary", "upper_secondary")),
                download=download,
                connectivity=rng.choice(CONNECTIVITY_CLASSES),
                monitoring=rng.choice(MONITORING_STATES),
                shortfalls=kinds,
                registered=i % 500 != 0,
            )
        )
    return snapshot(schools)


def fleet_snapshot(n: int, seed: int = 3) -> Snapshot:
    """A snapshot of n schools where the demo fleet puts them (real places and coordinates),
    with varied classes, statuses and shortfalls."""
    from edugap.collector.demo.fleet import build_fleet

    rng = random.Random(seed)
    schools = []
    for sim in build_fleet(n, 1, seed=seed):
        r = sim.school
        download = None if rng.random() < 0.15 else round(rng.lognormvariate(2.5, 1.2), 2)
        required = max(20.0, 0.05 * r.students)
        connectivity = (
            "unknown" if download is None
            else "good" if download >= required
            else "moderate" if download >= 1
            else "bad"
        )  # fmt: skip
        kinds = tuple(k for k in SHORTFALL_KINDS if rng.random() < 0.25)
        status = school(
            r.school_id,
            r.province,
            commune=r.commune,
            level=r.level,
            name=r.name,
            download=download,
            required=required,
            connectivity=connectivity,
            monitoring=rng.choices(MONITORING_STATES, (70, 10, 10, 10))[0],
            shortfalls=kinds,
        )
        schools.append(replace(status, lat=r.lat, lon=r.lon, students=r.students))
    return snapshot(schools)
