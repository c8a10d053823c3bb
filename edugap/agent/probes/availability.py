"""Availability probe: rounds of TCP connects to a few targets, summarised for each heartbeat."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from edugap.protocol.messages import Heartbeat, TargetCheck, new_report_id

if TYPE_CHECKING:
    from edugap.agent.probes import Identity


def parse_target(target: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port") into (host, port); ValueError names the bad value."""
    host, sep, port_text = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"availability target {target!r} is not host:port (port 1-65535)")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class AvailabilitySummary:
    """The heartbeat's availability fields for one period."""

    latency_ms: float | None
    reachable: bool
    period_seconds: int
    checks: int
    checks_ok: int
    loss_pct: float | None
    targets: list[TargetCheck]

    def heartbeat(
        self,
        identity: Identity,
        *,
        measured_at: datetime,
        queue_depth: int,
        dropped_reports: int,
        link: tuple[float | None, float | None],
    ) -> Heartbeat:
        """The heartbeat report carrying this summary, the outbox's health and link traffic."""
        return Heartbeat(
            report_id=new_report_id(),
            school_id=identity.school_id,
            device_id=identity.device_id,
            measured_at=measured_at,
            agent_version=identity.agent_version,
            latency_ms=self.latency_ms,
            reachable=self.reachable,
            period_seconds=self.period_seconds,
            checks=self.checks,
            checks_ok=self.checks_ok,
            loss_pct=self.loss_pct,
            targets=self.targets,
            queue_depth=queue_depth,
            dropped_reports=dropped_reports,
            link_rx_mbps=link[0],
            link_tx_mbps=link[1],
        )


@dataclass
class _Tally:
    checks: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)


class AvailabilityProbe:
    """One `check()` is one round of connects to every target; the round is ok if any answers."""

    name = "availability"

    def __init__(
        self,
        targets: list[str],
        *,
        timeout_s: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
        connect: Callable[[tuple[str, int], float], socket.socket] = socket.create_connection,
    ) -> None:
        if not targets:
            raise ValueError("availability targets: give at least one host:port")
        if timeout_s <= 0:
            raise ValueError(f"availability timeout_s {timeout_s!r} must be > 0")
        self._addresses = {t: parse_target(t) for t in targets}
        self.targets = list(self._addresses)
        self.timeout_s = timeout_s
        self._monotonic = monotonic
        self._connect = connect
        self._lock = threading.Lock()
        self._reset(monotonic())
        self._reachable = False

    def _reset(self, now: float) -> None:
        self._period_start = now
        self._checks = 0
        self._checks_ok = 0
        self._tallies = {t: _Tally() for t in self.targets}

    def _connect_ms(self, address: tuple[str, int]) -> float | None:
        start = time.perf_counter()
        try:
            conn = self._connect(address, self.timeout_s)
        except OSError:
            return None
        elapsed = (time.perf_counter() - start) * 1000.0
        conn.close()
        return elapsed

    def check(self) -> bool:
        """Connect once to every target; True when at least one answered."""
        results = {t: self._connect_ms(addr) for t, addr in self._addresses.items()}
        ok = any(ms is not None for ms in results.values())
        with self._lock:
            self._checks += 1
            self._checks_ok += ok
            self._reachable = ok
            for target, ms in results.items():
                tally = self._tallies[target]
                tally.checks += 1
                if ms is not None:
                    tally.ok += 1
                    tally.latencies.append(ms)
        return ok

    def summary(self, reset: bool = True) -> AvailabilitySummary:
        """What happened since the last reset; with `reset`, starts the next period."""
        now = self._monotonic()
        with self._lock:
            tallies = self._tallies
            all_latencies = [ms for t in tallies.values() for ms in t.latencies]
            connects = sum(t.checks for t in tallies.values())
            failed = connects - sum(t.ok for t in tallies.values())
            result = AvailabilitySummary(
                latency_ms=statistics.median(all_latencies) if all_latencies else None,
                reachable=self._reachable,
                period_seconds=max(0, round(now - self._period_start)),
                checks=self._checks,
                checks_ok=self._checks_ok,
                loss_pct=100.0 * failed / connects if connects else None,
                targets=[
                    TargetCheck(
                        target=name,
                        checks=t.checks,
                        ok=t.ok,
                        latency_ms=statistics.median(t.latencies) if t.latencies else None,
                    )
                    for name, t in tallies.items()
                ],
            )
            if reset:
                self._reset(now)
        return result
