"""Agent probes: each module measures one thing; report-producing probes are registered by name.

A report-producing probe is one class with `collect(identity) -> Report`. The availability and
traffic probes feed the heartbeat instead (they keep running counters between heartbeats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.protocol import Report


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a report is from: the school, this installation, this agent version."""

    school_id: str  # "unenrolled" when the agent has no school yet
    device_id: str
    agent_version: str


class Probe(Protocol):
    """One-method seam for report-producing probes."""

    name: str

    def collect(self, identity: Identity) -> Report: ...


# Imported after Identity so the probe modules can import it from this package.
from agent.probes.availability import AvailabilityProbe, AvailabilitySummary  # noqa: E402
from agent.probes.bandwidth import BandwidthProbe  # noqa: E402
from agent.probes.inventory import InventoryProbe  # noqa: E402
from agent.probes.traffic import TrafficProbe  # noqa: E402

PROBES: dict[str, type] = {
    "inventory": InventoryProbe,
    "bandwidth": BandwidthProbe,
    "availability": AvailabilityProbe,
    "traffic": TrafficProbe,
}

__all__ = [
    "PROBES",
    "AvailabilityProbe",
    "AvailabilitySummary",
    "BandwidthProbe",
    "Identity",
    "InventoryProbe",
    "Probe",
    "TrafficProbe",
]
