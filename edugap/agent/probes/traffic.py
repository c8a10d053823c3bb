"""Traffic probe: how busy the computer's network interfaces are, from the OS byte counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import psutil


class _Counters(Protocol):
    bytes_sent: int
    bytes_recv: int


def _is_loopback(name: str) -> bool:
    lowered = name.lower()
    return lowered == "lo" or lowered.startswith("lo:") or "loopback" in lowered


class TrafficProbe:
    """Receive and transmit rates over non-loopback interfaces between two calls of `rates()`."""

    name = "traffic"

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        counters: Callable[..., Any] = psutil.net_io_counters,
    ) -> None:
        self._monotonic = monotonic
        self._counters = counters
        self._lock = threading.Lock()
        self._previous: tuple[float, dict[str, tuple[int, int]]] | None = None

    def _read(self) -> dict[str, tuple[int, int]]:
        per_nic: Mapping[str, _Counters] = self._counters(pernic=True)
        return {
            name: (c.bytes_recv, c.bytes_sent)
            for name, c in per_nic.items()
            if not _is_loopback(name)
        }

    def rates(self) -> tuple[float | None, float | None]:
        """(receive, transmit) in Mbps since the previous call; (None, None) on the first call."""
        now = self._monotonic()
        current = self._read()
        with self._lock:
            previous, self._previous = self._previous, (now, current)
        if previous is None:
            return None, None
        then, before = previous
        elapsed = now - then
        if elapsed <= 0:
            return None, None
        rx = tx = 0
        for name, (recv, sent) in current.items():
            if name not in before:
                continue  # an interface that just appeared has no baseline yet
            old_recv, old_sent = before[name]
            # a counter that went backwards was reset (interface re-created, 32-bit wrap)
            rx += recv - old_recv if recv >= old_recv else 0
            tx += sent - old_sent if sent >= old_sent else 0
        return rx * 8 / elapsed / 1e6, tx * 8 / elapsed / 1e6
