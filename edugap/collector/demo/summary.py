"""The demo's shortfall summary: national counts by class and kind, and the top provinces."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edugap.collector.model import CONNECTIVITY_CLASSES, MONITORING_STATES, SHORTFALL_KINDS


@dataclass
class Summary:
    """Totals over the provinces of `/api/v1/provinces`."""

    schools: int = 0
    connectivity: Counter[str] = field(default_factory=Counter)
    monitoring: Counter[str] = field(default_factory=Counter)
    shortfalls: Counter[str] = field(default_factory=Counter)
    bandwidth_gap_mbps: float = 0.0
    computers_gap: int = 0
    # (province, schools, schools short of bandwidth, Mbps missing, computers missing)
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
            f"  missing:      {self.bandwidth_gap_mbps:,.0f} Mbps, "
            f"{self.computers_gap:,} computers",
            f"provinces with the most schools short of bandwidth (top {top}):",
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
        gap = float(p.get("bandwidth_gap_mbps", 0.0))
        computers = int(p.get("computers_gap", 0))
        s.bandwidth_gap_mbps += gap
        s.computers_gap += computers
        short = int(p.get("shortfalls", {}).get("bandwidth", 0))
        s.provinces.append((str(p.get("province") or "?"), schools, short, gap, computers))
    return s
