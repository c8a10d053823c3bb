"""The self-hosted test: timed parallel streams each way, the ramp-up left out of the figure.

Each direction runs `streams` connections, opened before the phase and kept for all of it, for
a fixed `seconds`: download is one `GET download?seconds=S` per connection, a body the server
ends on its own clock; upload is one chunked `POST upload` per connection that the client
ends at its deadline. A sampler reads every connection's kernel counters (`TCP_INFO`: bytes
received, bytes acknowledged by the server) every 100 ms; the figure is the aggregate rate
after the ramp-up (`ramp.stable_rate`). `bytes_used` is what the connections put on the link
(`tcpinfo`). A phase stops early when the data budget it was given would be exceeded.
The rule and its reasons are in docs/protocol.md, "The test the agent runs".
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import socket
import ssl
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from edugap.agent.probes import tcpinfo
from edugap.agent.probes.ramp import stable_rate
from edugap.agent.probes.speedtest_client import Latency, describe_error

Direction = Literal["download", "upload"]
LATENCY_SAMPLES: Final = 5
SAMPLE_SECONDS: Final = 0.1
#: Longest wait, after the deadline, for the server's download bodies to end. On a slow link
#: the server's send buffers would take seconds to cross it: the streams are closed instead,
#: and the bytes then still on their way are estimated (`_in_flight`).
DRAIN_SECONDS: Final = 1.0
#: A stream that has not ended this long after the phase was abandoned is shut down, so that a
#: stream TCP is holding back (a retransmission timeout on a lossy, slow link) ends the phase.
_SHUTDOWN_AFTER_SECONDS: Final = 0.5
#: How long upload streams may take, after the deadline, to deliver their last bytes and answer.
_ANSWER_SECONDS: Final = 5.0
#: Bytes still in flight when a phase stops for the budget: about this long at the last rate.
_IN_FLIGHT_SECONDS: Final = 0.5
_BLOCK: Final = 16 * 1024
_NOTSENT_LOWAT: Final[int | None] = getattr(socket, "TCP_NOTSENT_LOWAT", None)
_UNSENT_BYTES: Final = 16 * 1024


class NotSupported(Exception):
    """The endpoint has no timed streams (an older collector or a static nginx endpoint)."""


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """How long each direction runs and on how many connections."""

    seconds: float = 10.0
    streams: int = 4


@dataclass(slots=True)
class Phase:
    """One direction's outcome: the figure, the ramp-up left out, whether it stopped early."""

    mbps: float | None
    ramp_seconds: float = 0.0
    ran_seconds: float = 0.0
    stopped_early: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)


class StreamTest:
    """One self-hosted test's connections, phases and link bytes."""

    def __init__(
        self,
        server_url: str,
        *,
        plan: StreamPlan,
        timeout: float,
        stop: threading.Event,
        progress: Callable[[str, float], None],
        rate: Callable[[str, float], None] | None = None,
    ) -> None:
        base = server_url.rstrip("/")
        base = base.removesuffix("/upload.php")
        parts = urllib.parse.urlsplit(base)
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.path = parts.path
        self.plan = plan
        self.timeout = timeout
        self.stop = stop
        self.progress = progress
        self.rate = rate  # the current aggregate rate each sample, in Mbps (a live display)
        self.link_bytes = 0  # closed connections' link bytes, both ways
        self.base_rtt = 0.0  # seconds, from the latency phase
        self._block = os.urandom(_BLOCK)  # incompressible upload data

    # --- connections ---------------------------------------------------------------------

    def _connect(self, *, upload: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(self.netloc, timeout=self.timeout, context=context)
        else:
            conn = http.client.HTTPConnection(self.netloc, timeout=self.timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ConnectionError(
                f"cannot reach {self.scheme}://{self.netloc}: {describe_error(e)}"
            ) from e
        if upload and _NOTSENT_LOWAT is not None:
            # bytes count as sent when the server acknowledges them; a small unsent queue
            # keeps the end of the phase on time on a slow uplink
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, _UNSENT_BYTES)
        return conn

    def _close(
        self,
        conn: http.client.HTTPConnection,
        sent: int,
        received: int,
        cut_at: float = 0.0,
        counters: tcpinfo.TcpCounters | None = None,
    ) -> None:
        """Close `conn`, adding what it put on the link to `link_bytes`.

        `cut_at` is the rate (bytes/s) of a download closed before its body ended: what the
        server had sent by then still crosses the link, and each segment is answered by a reset.
        `counters`, if given, were read when the stream was shut down.
        """
        if counters is None and conn.sock is not None:
            counters = tcpinfo.read(conn.sock)
        if counters is not None:
            self.link_bytes += counters.link_bytes()
        else:
            self.link_bytes += tcpinfo.estimate_link_bytes(sent, received)
        if cut_at > 0:
            self.link_bytes += self._in_flight(cut_at, counters)
        conn.close()

    def _in_flight(self, rate: float, counters: tcpinfo.TcpCounters | None) -> int:
        """Bytes that reach a download stream after it is closed: its rate times the time data
        takes to arrive (the receiver's round trip, queues included), and half a round trip
        more for what the ACKs already on their way to the server release (measured on
        linklab: 2 to 10 Mbit/s, 40 and 80 ms)."""
        rtt = counters.rcv_rtt_us / 1e6 if counters is not None and counters.rcv_rtt_us else 0.0
        arriving = max(rtt, self.base_rtt) + self.base_rtt / 2
        data = rate * arriving
        segments = data / tcpinfo.MSS
        return int(data + segments * (tcpinfo.SEGMENT_OVERHEAD + tcpinfo.RESET_BYTES))

    # --- latency -------------------------------------------------------------------------

    def latency(self) -> Latency:
        """Round trips of `latency.txt` on one connection; the first (set-up) is not timed."""
        conn = self._connect()
        times: list[float] = []
        received = 0
        where = f"{self.scheme}://{self.netloc}{self.path}/latency.txt"
        try:
            for i in range(LATENCY_SAMPLES + 1):
                start = time.perf_counter()
                conn.request("GET", f"{self.path}/latency.txt?x={time.time_ns()}.{i}")
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - start
                received += len(body) + 200
                if response.status == 429:
                    raise ValueError(
                        f"{where} answered HTTP 429: too many requests from this address "
                        f"(retry after {response.getheader('Retry-After', '?')} s)"
                    )
                if response.status != 200 or not body.startswith(b"test=test"):
                    raise ValueError(
                        f"{where} answered HTTP {response.status} {body[:40]!r}: "
                        "not a speed-test endpoint"
                    )
                if i:
                    times.append(elapsed * 1000.0)
        except (OSError, http.client.HTTPException) as e:
            raise ConnectionError(f"cannot reach {where}: {describe_error(e)}") from e
        finally:
            self._close(conn, 150 * (LATENCY_SAMPLES + 1), received)
        jitter = (
            statistics.fmean(abs(a - b) for a, b in itertools.pairwise(times))
            if len(times) > 1
            else None
        )
        self.base_rtt = statistics.median(times) / 1000.0
        return Latency(statistics.median(times), jitter)

    # --- phases --------------------------------------------------------------------------

    def phase(self, direction: Direction, seconds: float, cap_bytes: float) -> Phase:
        """Run one direction for `seconds`, stopping early past `cap_bytes` on the link."""
        conns: list[http.client.HTTPConnection] = []
        try:
            for _ in range(self.plan.streams):
                conns.append(self._connect(upload=direction == "upload"))
        except ConnectionError:
            for conn in conns:
                self._close(conn, 0, 0)
            raise
        for conn in conns:
            # A slow stream is not a failed one: a read or write may wait as long as the phase
            # lasts. The phase itself ends its streams (deadline, drain, time limit).
            conn.sock.settimeout(seconds + DRAIN_SECONDS + _ANSWER_SECONDS + self.timeout)
        state = _Streams(len(conns), time.monotonic() + seconds)
        worker = self._download if direction == "download" else self._upload
        threads = [
            threading.Thread(
                target=worker, args=(conn, i, seconds, state), name=f"speedtest-{direction}-{i}"
            )
            for i, conn in enumerate(conns)
        ]
        start = time.monotonic()
        for thread in threads:
            thread.daemon = True
            thread.start()
        samples: list[tuple[float, int]] = [(0.0, 0)]
        stopped_early = False
        self.progress(direction, 0.0)
        last_rate = 0.0
        abandoned_at: float | None = None
        shut: dict[int, tcpinfo.TcpCounters | None] = {}
        grace = DRAIN_SECONDS if direction == "download" else _ANSWER_SECONDS
        while any(t.is_alive() for t in threads):
            time.sleep(SAMPLE_SECONDS)
            now = time.monotonic()
            if self.stop.is_set() or now > state.deadline + grace:
                state.abandon.set()
            if state.abandon.is_set():
                abandoned_at = abandoned_at or now
                if now - abandoned_at >= _SHUTDOWN_AFTER_SECONDS:
                    self._shut_down(conns, threads, shut)
                continue
            if now >= state.deadline:
                continue
            counted, link = self._counters(conns, direction, state.moved)
            samples.append((now - start, counted))
            recent = [s for s in samples if s[0] >= samples[-1][0] - 1.0]
            span = recent[-1][0] - recent[0][0]
            last_rate = (recent[-1][1] - recent[0][1]) / span if span > 0 else last_rate
            if link + last_rate * _IN_FLIGHT_SECONDS >= cap_bytes:
                stopped_early = True
                state.deadline = now  # upload streams end their bodies
                if direction == "download":
                    state.abandon.set()  # the server would go on sending to its own end
            if self.rate is not None:
                self.rate(direction, last_rate * 8 / 1e6)
            self.progress(direction, min(1.0, (now - start) / seconds))
        for i, conn in enumerate(conns):
            payload = state.moved[i]
            if direction == "download":
                cut = 0.0 if state.ended[i] else last_rate / len(conns)
                self._close(conn, 400, payload, cut_at=cut, counters=shut.get(i))
            else:
                self._close(conn, payload, 400, counters=shut.get(i))
        if state.unsupported:
            raise NotSupported(state.unsupported[0])
        if state.errors and not stopped_early:
            more = f" (and {len(state.errors) - 1} more)" if len(state.errors) > 1 else ""
            raise ConnectionError(f"{direction} failed: {state.errors[0]}{more}")
        if self.stop.is_set():
            raise TimeoutError(f"{direction} stopped by the test's time limit")
        rate, ramp = stable_rate(samples)
        if self.rate is not None:
            self.rate(direction, rate * 8 / 1e6)
        self.progress(direction, 1.0)
        return Phase(
            mbps=rate * 8 / 1e6 if samples[-1][1] > 0 else None,
            ramp_seconds=ramp,
            ran_seconds=samples[-1][0],
            stopped_early=stopped_early,
            samples=samples,
        )

    @staticmethod
    def _shut_down(
        conns: list[http.client.HTTPConnection],
        threads: list[threading.Thread],
        shut: dict[int, tcpinfo.TcpCounters | None],
    ) -> None:
        """Shut down the sockets of streams still running (a blocked read or write returns),
        keeping their counters as they were."""
        for i, (conn, thread) in enumerate(zip(conns, threads, strict=True)):
            if i in shut or not thread.is_alive() or conn.sock is None:
                continue
            shut[i] = tcpinfo.read(conn.sock)
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _counters(
        conns: list[http.client.HTTPConnection], direction: Direction, moved: list[int]
    ) -> tuple[int, int]:
        """(payload the phase moved so far, link bytes so far), from the kernel if it can."""
        counted = link = 0
        for i, conn in enumerate(conns):
            c = tcpinfo.read(conn.sock) if conn.sock is not None else None
            if c is None:
                counted += moved[i]
                link += tcpinfo.estimate_link_bytes(moved[i], 0)
            else:
                counted += c.bytes_received if direction == "download" else c.bytes_acked
                link += c.link_bytes()
        return counted, link

    def _download(
        self, conn: http.client.HTTPConnection, i: int, seconds: float, state: _Streams
    ) -> None:
        buf = bytearray(64 * 1024)
        try:
            conn.request("GET", f"{self.path}/download?seconds={seconds:.3f}&x={time.time_ns()}")
            response = conn.getresponse()
            if response.status == 404:
                state.unsupported.append(f"{self.path}/download answered HTTP 404")
                return
            if response.status != 200:
                state.errors.append(f"HTTP {response.status} {response.reason}")
                return
            while not state.abandon.is_set():
                n = response.readinto(buf)
                if not n:
                    state.ended[i] = not state.abandon.is_set()  # not a shut-down socket
                    break
                state.moved[i] += n
        except (OSError, http.client.HTTPException) as e:
            if not state.abandon.is_set():
                state.errors.append(describe_error(e))

    def _upload(
        self, conn: http.client.HTTPConnection, i: int, seconds: float, state: _Streams
    ) -> None:
        frame = b"%x\r\n" % len(self._block) + self._block + b"\r\n"
        try:
            conn.putrequest("POST", f"{self.path}/upload?x={time.time_ns()}")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            while time.monotonic() < state.deadline and not state.abandon.is_set():
                conn.send(frame)
                state.moved[i] += len(frame)
            if state.abandon.is_set():
                return
            conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
            body = response.read()
            if response.status == 404:
                state.unsupported.append(f"{self.path}/upload answered HTTP 404")
            elif response.status != 200 or not body.startswith(b"bytes="):
                state.errors.append(f"HTTP {response.status} {body[:60]!r}")
        except (OSError, http.client.HTTPException) as e:
            if not state.abandon.is_set():
                state.errors.append(describe_error(e))


class _Streams:
    """What a phase's stream threads share with it."""

    def __init__(self, n: int, deadline: float) -> None:
        self.moved = [0] * n
        self.ended = [False] * n  # download bodies read to their end
        self.deadline = deadline  # the phase may bring it forward (the budget)
        self.abandon = threading.Event()
        self.errors: list[str] = []
        self.unsupported: list[str] = []
