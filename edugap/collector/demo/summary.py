"""The demo's shortfall summary: national counts by class and kind, and the top provinces."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edugap.collector.model import CONNECTIVITY_CLASSES, MONITORING_STATES, NEEDS, SHORTFALL_KINDS


@dataclass
class Summary:
    """Totals over the provinces of `/api/v1/provinces`."""

    schools: int = 0
    connectivity: Counter[str] = field(default_factory=Counter)
    monitoring: Counter[str] = field(default_factory=Counter)
    shortfalls: Counter[str] = field(default_factory=Counter)
    need: Counter[str] = field(default_factory=Counter)
    # evidence ("measured", "assumed") -> total missing
    bandwidth_gap_mbps: dict[str, float] = field(
        default_factory=lambda: {"measured": 0.0, "assumed": 0.0}
    )
    computers_gap: dict[str, int] = field(default_factory=lambda: {"measured": 0, "assumed": 0})
    # (province, schools, schools short of bandwidth, measured Mbps and computers missing)
    provinces: list[tuple[str, int, int, float, int]] = field(default_factory=list)

    @property
    def heard_from(self) -> int:
        """Schools that have sent at least one report."""
        return self.schools - self.monitoring["never"]

    def text(self, top: int = 5) -> str:
        """The summary as the demo prints it."""

        def line(counts: Counter[str], names: tuple[str, ...]) -> str:
            return ", ".join(f"{n} {counts[n]}" for n in names)

        rows = [
            f"{self.schools} schools",
            f"  connectivity: {line(self.connectivity, CONNECTIVITY_CLASSES)}",
            f"  monitoring:   {line(self.monitoring, MONITORING_STATES)}",
            f"  shortfalls:   {line(self.shortfalls, SHORTFALL_KINDS)}",
            f"  need:         {line(self.need, NEEDS)}",
            f"  missing, measured:  {self.bandwidth_gap_mbps['measured']:,.0f} Mbps, "
            f"{self.computers_gap['measured']:,} computers",
            f"  missing, assumed (no recent test or inventory):  "
            f"{self.bandwidth_gap_mbps['assumed']:,.0f} Mbps, "
            f"{self.computers_gap['assumed']:,} computers",
            f"provinces with the most schools short of bandwidth (top {top}, measured):",
        ]
        ranked = sorted(self.provinces, key=lambda p: (-p[2], -p[3], p[0]))[:top]
        width = max((len(p[0]) for p in ranked), default=10)
        for name, schools, short, mbps, computers in ranked:
            rows.append(
                f"  {name:<{width}}  {short:>4} of {schools:>4} schools, "
                f"{mbps:>8,.0f} Mbps and {computers:>5,} computers missing"
            )
        return "\n".join(rows)


def summarise(provinces_doc: dict[str, Any]) -> Summary:
    """Sum the per-province summaries of the API into national figures."""
    s = Summary()
    for p in provinces_doc.get("provinces", []):
        schools = int(p.get("schools", 0))
        s.schools += schools
        s.connectivity.update(p.get("by_connectivity", {}))
        s.monitoring.update(p.get("by_monitoring", {}))
        s.shortfalls.update(p.get("shortfalls", {}))
        s.need.update(p.get("by_need", {}))
        for evidence in ("measured", "assumed"):
            s.bandwidth_gap_mbps[evidence] += float(p.get(f"bandwidth_gap_{evidence}_mbps", 0.0))
            s.computers_gap[evidence] += int(p.get(f"computers_gap_{evidence}", 0))
        gap = float(p.get("bandwidth_gap_measured_mbps", 0.0))
        computers = int(p.get("computers_gap_measured", 0))
        short = int(p.get("shortfalls", {}).get("bandwidth", 0))
        s.provinces.append((str(p.get("province") or "?"), schools, short, gap, computers))
    return s
