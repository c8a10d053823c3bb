"""Agent probes: each module measures one thing; report-producing probes are registered by name.

A report-producing probe is one class with `collect(identity) -> Report`. The availability and
traffic probes feed the heartbeat instead (they keep running counters between heartbeats).

The registry is lazy: `PROBES` maps a name to "module:Class", and a probe's module (with its
dependencies, e.g. speedtest-cli and http.client for the bandwidth probe) is imported the first
time the probe is asked for. An agent whose bandwidth role is off never loads speedtest-cli.
Adding a probe is one module in this folder and one line in `PROBES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edugap.agent.probes.availability import AvailabilityProbe, AvailabilitySummary
    from edugap.agent.probes.bandwidth import BandwidthProbe
    from edugap.agent.probes.inventory import InventoryProbe
    from edugap.agent.probes.traffic import TrafficProbe
    from edugap.protocol.messages import Report


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a report is from: the school, this installation, this agent version."""

    school_id: str  # "unenrolled" when the agent has no school yet
    device_id: str
    agent_version: str
    speed_tester: bool | None = None  # designated to run the school's speed tests


class Probe(Protocol):
    """One-method seam for report-producing probes."""

    name: str

    def collect(self, identity: Identity) -> Report: ...


#: Probe name -> "module:Class", imported on first use.
PROBES: dict[str, str] = {
    "inventory": "edugap.agent.probes.inventory:InventoryProbe",
    "bandwidth": "edugap.agent.probes.bandwidth:BandwidthProbe",
    "availability": "edugap.agent.probes.availability:AvailabilityProbe",
    "traffic": "edugap.agent.probes.traffic:TrafficProbe",
}

# Other public names of the probe modules, also loaded on first use.
_OTHER_NAMES = {"AvailabilitySummary": "edugap.agent.probes.availability:AvailabilitySummary"}
_CLASS_PATHS = {path.rsplit(":", 1)[1]: path for path in PROBES.values()} | _OTHER_NAMES


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def probe_class(name: str) -> type:
    """The class of the probe registered as `name`; KeyError lists the known names."""
    try:
        path = PROBES[name]
    except KeyError:
        raise KeyError(f"no probe {name!r}; known: {', '.join(sorted(PROBES))}") from None
    cls: type = _resolve(path)
    return cls


def __getattr__(name: str) -> Any:
    # `from edugap.agent.probes import BandwidthProbe` keeps working, importing only that probe.
    path = _CLASS_PATHS.get(name)
    if path is None:
        raise AttributeError(f"module 'edugap.agent.probes' has no attribute {name!r}")
    return _resolve(path)


__all__ = [
    "PROBES",
    "AvailabilityProbe",
    "AvailabilitySummary",
    "BandwidthProbe",
    "Identity",
    "InventoryProbe",
    "Probe",
    "TrafficProbe",
    "probe_class",
]
