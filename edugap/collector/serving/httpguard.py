"""HTTP that a crowd cannot stop: a connection limit below the descriptor limit, and timeouts.

uvicorn closes idle keep-alive connections, but it waits for ever for a request head that
never completes, and it accepts connections until the process runs out of descriptors. 1,100
clients each sending half a request then took /readyz, /metrics and the API down, and left
ingest no descriptor to reconnect to the broker with. Here, on top of uvicorn's h11 protocol:

- a request head must arrive whole within `header_timeout` of the connection (or of the
  previous response); a request body may not stall longer than that; a response the client
  stops reading is dropped after `send_timeout` (60 s);
- at most `max_connections` are open, fewer than the descriptors the process may open. A new
  connection beyond that takes the place of the one that has waited longest for a request
  (or, failing that, of the longest stalled reader), so a health check still gets through
  while a crowd holds half-open connections; only when every connection is busy with a
  request is the newcomer refused (503);
- `raise_nofile_limit()` raises the soft RLIMIT_NOFILE to the hard limit at start.

Every close is counted by reason in `edugap_collector_http_closed_total`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final, Protocol

import h11
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: How many connections the event loop accepts in one go; also the listen backlog.
ACCEPT_BACKLOG: Final = 128
#: Descriptors kept free of HTTP: the store, the broker, log files, pipes, and the connections
#: accepted in the last few loop turns that the limit has not seen yet.
RESERVED_FDS: Final = 3 * ACCEPT_BACKLOG + 128
#: A response whose client has read nothing for this long is dropped (nginx's send_timeout).
SEND_STALL_SECONDS: Final = 60.0
REASONS: Final = ("header_timeout", "body_timeout", "send_timeout", "idle", "evicted", "refused")
_BUSY_TEXT: Final = b"too many connections, and every one is busy with a request\n"
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s"
) % (len(_BUSY_TEXT), _BUSY_TEXT)


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux's default nr_open
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, e)
        return soft
    return target


def connection_limit(configured: int, nofile: int) -> int:
    """`configured`, lowered so that HTTP connections cannot use up `nofile` descriptors."""
    return max(1, min(configured, nofile - RESERVED_FDS))


class ConnectionGuard:
    """What every connection of one server shares: the limits, who waits, what was closed.

    Used on the event loop's thread only; the counters are read by metrics on another thread
    (single reads of ints and a Counter copy, which the GIL keeps whole).
    """

    def __init__(
        self,
        max_connections: int,
        header_timeout: float,
        idle_timeout: int,
        send_timeout: float = SEND_STALL_SECONDS,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.open: set[GuardedProtocol] = set()
        # oldest first (dicts keep insertion order): waiting for a request head, and
        # responding to a client that stopped reading
        self.waiting: dict[GuardedProtocol, None] = {}
        self.stalled: dict[GuardedProtocol, None] = {}
        self.closed: Counter[str] = Counter()

    def protocol(self) -> type[GuardedProtocol]:
        """The protocol class to give uvicorn (`uvicorn.Config(http=...)`), bound to this guard."""
        return type("BoundGuardedProtocol", (GuardedProtocol,), {"guard": self})

    def make_room(self, newcomer: GuardedProtocol) -> bool:
        """Close the connection that has waited longest, if one must go; False if none can."""
        if len(self.open) <= self.max_connections:
            return True
        for queue in (self.waiting, self.stalled):
            victim = next((c for c in queue if c is not newcomer), None)
            if victim is not None:
                victim.close("evicted")
                return True
        return False


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with the guard's limit and timeouts (see the module docstring)."""

    guard: ConnectionGuard  # set on the subclass ConnectionGuard.protocol() makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    # --- the connection's life ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.open.add(self)
        if not self.guard.make_room(self):
            self.guard.open.discard(self)
            self.guard.closed["refused"] += 1
            transport.write(_BUSY)
            transport.close()
            return
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def close(self, reason: str) -> None:
        """Close this connection now and count why."""
        if self.transport.is_closing():
            return
        self.guard.closed[reason] += 1
        self._forget()
        self.transport.close()

    def _forget(self) -> None:
        for timer in (self._timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._send_timer = None
        self.guard.open.discard(self)
        self.guard.waiting.pop(self, None)
        self.guard.stalled.pop(self, None)

    # --- waiting for a request head, reading its body -------------------------------------

    def _await_request(self) -> None:
        self.guard.waiting.pop(self, None)
        self.guard.waiting[self] = None  # the newest waiter goes last
        self._arm(self.guard.header_timeout, self._head_overdue)

    def _arm(self, seconds: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, callback)

    def _head_overdue(self) -> None:
        self._timer = None
        if self in self.guard.waiting:
            self.close("header_timeout")

    def _body_overdue(self) -> None:
        self._timer = None
        if self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # we stopped reading, not the client: wait again
            self._arm(self.guard.header_timeout, self._body_overdue)
        else:
            self.close("body_timeout")

    def handle_events(self) -> None:
        super().handle_events()
        if self.transport.is_closing() or self.cycle is None or self.cycle.response_complete:
            return  # still waiting for a (whole) request head: its deadline stands
        self.guard.waiting.pop(self, None)
        if self.conn.their_state is h11.SEND_BODY:
            # a body is coming: every piece of it restarts the clock
            self._arm(self.guard.header_timeout, self._body_overdue)
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            # before uvicorn's handler: a pipelined request it starts leaves the waiters again
            self._await_request()
        super().on_response_complete()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.guard.closed["idle"] += 1
            self._forget()
        super().timeout_keep_alive_handler()

    # --- a client that stops reading the response -----------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None and not self.transport.is_closing():
            self.guard.stalled[self] = None
            self._send_timer = self.loop.call_later(self.guard.send_timeout, self._send_overdue)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.guard.stalled.pop(self, None)
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_overdue(self) -> None:
        self._send_timer = None
        if self.flow.write_paused:
            self.close("send_timeout")


class Counted(Protocol):
    """Anything that counts the requests it refused (the speed-test endpoint)."""

    limited: int


class HttpCollector(Collector):
    """The guard's figures and the speed-test endpoint's refusals as metrics; both are set by
    `edugap serve` once they exist (until then the series are empty or zero)."""

    def __init__(self) -> None:
        self.guard: ConnectionGuard | None = None
        self.speedtest: Counted | None = None

    def collect(self) -> Iterable[Metric]:
        guard = self.guard
        open_now = GaugeMetricFamily(
            "edugap_collector_http_connections", "HTTP connections open now."
        )
        limit = GaugeMetricFamily(
            "edugap_collector_http_connection_limit",
            "Most HTTP connections open at once (http.max_connections, fitted to descriptors).",
        )
        closed = CounterMetricFamily(
            "edugap_collector_http_closed",
            "HTTP connections the collector closed, by reason.",
            labels=["reason"],
        )
        counts = Counter(guard.closed) if guard else Counter[str]()
        for reason in REASONS:
            closed.add_metric([reason], float(counts[reason]))
        if guard is not None:
            open_now.add_metric([], float(len(guard.open)))
            limit.add_metric([], float(guard.max_connections))
        limited = CounterMetricFamily(
            "edugap_collector_speedtest_limited",
            "Speed-test requests refused with 429 by the per-address rate limit.",
            value=float(self.speedtest.limited if self.speedtest else 0),
        )
        return [open_now, limit, closed, limited]
