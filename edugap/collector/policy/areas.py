"""Counts and gap totals of an area (a province or a commune), the measured and the assumed
gaps apart."""

from __future__ import annotations

from dataclasses import dataclass, field

from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    NEEDS,
    SHORTFALL_KINDS,
    SPEEDTEST_STATES,
    AreaSummary,
    SchoolStatus,
)

_APART = ("measured", "assumed")


@dataclass(slots=True)
class Area:
    """An area's totals, added school by school; `summary` freezes them."""

    schools: int = 0
    by_connectivity: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(CONNECTIVITY_CLASSES, 0)
    )
    by_monitoring: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(MONITORING_STATES, 0)
    )
    shortfalls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHORTFALL_KINDS, 0))
    by_need: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NEEDS, 0))
    bandwidth_gap: dict[str, float] = field(
        default_factory=lambda: {"measured": 0.0, "assumed": 0.0}
    )
    computers_gap: dict[str, int] = field(default_factory=lambda: {"measured": 0, "assumed": 0})
    computers_usable: int = 0
    computers_required: int = 0
    os_out_of_support: int = 0
    by_speedtest: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPEEDTEST_STATES, 0))

    def add(self, s: SchoolStatus) -> None:
        self.schools += 1
        self.by_connectivity[s.connectivity] += 1
        self.by_monitoring[s.monitoring] += 1
        self.by_need[s.need] += 1
        self.by_speedtest[s.speedtest] += 1
        for kind in s.shortfalls:
            self.shortfalls[kind] += 1
        if s.bandwidth_evidence != "absent":  # an absent gap is 0
            self.bandwidth_gap[s.bandwidth_evidence] += s.bandwidth_gap_mbps
        if s.computers_evidence != "absent":
            self.computers_gap[s.computers_evidence] += s.computers_gap
        self.computers_usable += s.computers_usable
        self.computers_required += s.computers_required or 0
        self.os_out_of_support += s.os_out_of_support

    def summary(self, province: str, commune: str | None) -> AreaSummary:
        mbps, computers = self.bandwidth_gap, self.computers_gap
        return AreaSummary(
            province=province,
            commune=commune,
            schools=self.schools,
            by_connectivity=self.by_connectivity,
            by_monitoring=self.by_monitoring,
            shortfalls=self.shortfalls,
            bandwidth_gap_mbps=round(mbps["measured"] + mbps["assumed"], 2),
            computers_gap=computers["measured"] + computers["assumed"],
            computers_usable=self.computers_usable,
            computers_required=self.computers_required,
            os_out_of_support=self.os_out_of_support,
            bandwidth_gap_measured_mbps=round(mbps["measured"], 2),
            bandwidth_gap_assumed_mbps=round(mbps["assumed"], 2),
            computers_gap_measured=computers["measured"],
            computers_gap_assumed=computers["assumed"],
            by_need=self.by_need,
            by_speedtest=self.by_speedtest,
        )
