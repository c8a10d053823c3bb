"""Bandwidth probe: one speed test, against the self-hosted endpoint or speedtest.net.

The self-hosted backend runs the agent's own test (`streams`: timed parallel streams each way,
the ramp-up left out); against an endpoint without timed streams (an older collector, a
static nginx endpoint) it falls back to speedtest-cli's fixed files, as does speedtest.net.
A test that fails (server down, an HTTP error or a cut connection mid-test, the time limit, a
speedtest.net configuration failure) still yields a report: `error` set, no speeds, and the
bytes it used, because those count against the school's data budget.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from edugap.agent.probes import Identity
from edugap.agent.probes.speedtest_client import (
    Latency,
    SelfhostedPlan,
    Session,
    Shutdown,
    TransferLog,
    describe_error,
    measure_latency,
    upload_url,
)
from edugap.agent.probes.streams import Direction, NotSupported, StreamPlan, StreamTest
from edugap.agent.probes.tcpinfo import estimate_link_bytes
from edugap.agent.probes.traffic import TrafficProbe
from edugap.protocol.messages import Bandwidth, new_report_id, utcnow

Backend = Literal["selfhosted", "speedtest.net"]
Progress = Callable[[str, float], None]
BACKENDS: tuple[Backend, ...] = ("selfhosted", "speedtest.net")
#: Upper estimate of one speedtest.net test (its own config: up to ~10 s each way on fast links).
SPEEDTEST_NET_ESTIMATE_BYTES = 300_000_000
#: Before the first self-hosted test: 40 Mbps each way for 10 s, with headers (the phases also
#: stop themselves at the budget, so this only decides whether a test starts).
SELFHOSTED_FIRST_ESTIMATE_BYTES = 107_000_000
#: Headroom over the last measured speed when estimating the next test's bytes.
_ESTIMATE_HEADROOM = 1.5
#: Headroom when sizing a phase to the budget that is left.
_PHASE_HEADROOM = 1.15
#: Time a test needs besides its two phases: latency, connections, the download's drain.
_SETUP_SECONDS = 8.0
#: A phase shorter than this measures too little to report.
_MIN_PHASE_SECONDS = 1.0
#: Connections one speedtest-cli test opens (requests, each its own), for its header estimate.
_LEGACY_CONNECTIONS = 40
#: Latency probes, upload answers and the like: small bodies on top of the test payload.
_OVERHEAD_BYTES = 64 * 1024


class BandwidthProbe:
    """Runs one bounded speed test per `collect()` and reports it as a `Bandwidth` message."""

    name = "bandwidth"

    def __init__(
        self,
        *,
        backend: Backend,
        server_url: str | None,
        timeout_s: float = 30.0,
        upload: bool = True,
        traffic: TrafficProbe | None = None,
        clock: Callable[[], datetime] = utcnow,
        plan: SelfhostedPlan | None = None,
        session_factory: Callable[..., Session] = Session,
        streams: StreamPlan | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"bandwidth backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if backend == "selfhosted" and not server_url:
            raise ValueError("bandwidth backend 'selfhosted' needs a server_url")
        if server_url and not server_url.startswith(("http://", "https://")):
            raise ValueError(f"speed-test server_url {server_url!r} must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError(f"bandwidth timeout_s {timeout_s!r} must be > 0")
        self.backend: Backend = backend
        self.server_url = server_url
        self.timeout_s = timeout_s
        self.upload = upload
        self.traffic = traffic
        self._clock = clock
        # Each direction gets a third of the time budget (at most 10 s, speedtest.net's own
        # test length); the rest is latency, set-up and the threads winding down.
        seconds = min(10.0, timeout_s / 3)
        self.plan = plan or SelfhostedPlan(seconds=seconds)
        self._session_factory = session_factory
        self.streams = streams or StreamPlan()
        # both phases and the set-up fit in timeout_s
        self.phase_seconds = min(self.streams.seconds, max(1.0, (timeout_s - _SETUP_SECONDS) / 2))
        self._last_mbps: tuple[float, float] | None = None
        self._test: StreamTest | None = None
        self._budget = math.inf
        self._rate: Progress | None = None

    # --- data budget ---------------------------------------------------------------------

    def estimated_bytes(self) -> int:
        """Upper estimate of the bytes one test moves, for the daily data budget."""
        if self.backend == "speedtest.net":
            cap = SPEEDTEST_NET_ESTIMATE_BYTES + _OVERHEAD_BYTES
            seconds = 10.0
        else:
            cap = SELFHOSTED_FIRST_ESTIMATE_BYTES
            seconds = self.phase_seconds
        if self._last_mbps is None:
            return cap
        down, up = self._last_mbps
        rate_mbps = down + (up if self.upload else 0.0)
        by_rate = math.ceil(rate_mbps * _ESTIMATE_HEADROOM * 1e6 / 8 * seconds) + _OVERHEAD_BYTES
        # with a measured rate, the timed test moves what the link carries in its time
        return by_rate if self.backend == "selfhosted" else min(cap, by_rate)

    # --- reports -------------------------------------------------------------------------

    def _report(self, identity: Identity, **fields: Any) -> Bandwidth:
        return Bandwidth(
            report_id=new_report_id(),
            school_id=identity.school_id,
            device_id=identity.device_id,
            measured_at=self._clock(),
            agent_version=identity.agent_version,
            backend=self.backend,
            # msgspec checks lengths only when decoding: keep within the protocol's 256 here
            server=(fields.pop("server", None) or self.server_url or "speedtest.net")[:256],
            **fields,
        )

    def skipped_report(self, identity: Identity, reason: str) -> Bandwidth:
        """A report for a test that was not run (e.g. the daily data budget is spent)."""
        return self._report(identity, skipped=True, error=reason[:2048])

    def collect(
        self,
        identity: Identity,
        progress: Progress | None = None,
        *,
        budget_bytes: float | None = None,
        rate: Progress | None = None,
    ) -> Bandwidth:
        """Run one test; never raises: a failure is a report with `error` and no speeds.

        `budget_bytes` is what today's data budget has left: the self-hosted test sizes and
        stops its phases to stay within it, and says so (`partial`, `note`). `rate` hears the
        self-hosted test's current rate (stage, Mbps) every sample, for a live display.
        """
        report = progress or (lambda stage, fraction: None)
        self._budget = math.inf if budget_bytes is None else budget_bytes
        self._test = None
        self._rate = rate
        log = TransferLog()
        shutdown = Shutdown()
        timer = threading.Timer(self.timeout_s, shutdown.set)
        timer.daemon = True
        if self.traffic is not None:
            self.traffic.rates()  # start a fresh traffic period for this test
        timer.start()
        try:
            fields = self._run(log, shutdown, report)
        except Exception as e:
            fields = {"error": describe_error(e)[:2048]}
        finally:
            timer.cancel()
        if shutdown.is_set() and "error" not in fields:
            fields = {"error": f"speed test exceeded its {self.timeout_s:g} s limit"}
        if "error" in fields:
            fields.pop("download_mbps", None)
            fields.pop("upload_mbps", None)
        else:
            earlier_up = self._last_mbps[1] if self._last_mbps else 0.0
            self._last_mbps = (fields["download_mbps"], fields.get("upload_mbps") or earlier_up)
        if self.traffic is not None:
            fields["link_rx_mbps"], fields["link_tx_mbps"] = self.traffic.rates()
        report("done", 1.0)
        used = estimate_link_bytes(log.sent, log.received, _LEGACY_CONNECTIONS) if log.total else 0
        if self._test is not None:
            used += self._test.link_bytes
        return self._report(identity, bytes_used=used, **fields)

    # --- the test itself -----------------------------------------------------------------

    def _run(self, log: TransferLog, shutdown: Shutdown, progress: Progress) -> dict[str, Any]:
        socket_timeout = min(10.0, self.timeout_s)
        progress("latency", 0.0)
        fields: dict[str, Any] = {}
        if self.backend == "selfhosted":
            assert self.server_url is not None
            try:
                return self._run_streams(self.server_url, socket_timeout, shutdown, progress)
            except NotSupported:
                pass  # an endpoint without timed streams: speedtest-cli's files below
            try:
                latency: Latency = measure_latency(self.server_url, log, timeout=socket_timeout)
            except (ConnectionError, ValueError) as e:
                return {"error": str(e)}
            session = self._session_factory(
                log=log,
                synthetic_config=self.plan.config(),
                timeout=socket_timeout,
                secure=self.server_url.startswith("https://"),
                shutdown_event=shutdown,
            )
            url = upload_url(self.server_url)
            session.use_server(
                {
                    "url": url,
                    "name": url,
                    "sponsor": "selfhosted",
                    "id": 0,
                    "d": 0.0,
                    "latency": latency.median_ms,
                }
            )
            fields.update(latency_ms=latency.median_ms, jitter_ms=latency.jitter_ms)
        else:
            try:
                session = self._session_factory(
                    log=log, timeout=socket_timeout, secure=True, shutdown_event=shutdown
                )
                best = session.get_best_server()
            except Exception as e:
                return {"error": f"speedtest.net set-up failed: {describe_error(e)}"}
            fields.update(
                latency_ms=float(best.get("latency", 0.0)),
                server=f"{best.get('host') or best.get('url', '')} ({best.get('sponsor', '')})",
            )

        def phase(stage: str) -> Callable[..., None]:
            def callback(i: int, count: int, start: bool = False, end: bool = False) -> None:
                if end and count:
                    progress(stage, (i + 1) / count)

            return callback

        progress("download", 0.0)
        errors_before = len(log.errors)
        threads = self.plan if self.backend == "selfhosted" else None
        bits = session.download(
            callback=phase("download"), threads=threads.download_threads if threads else None
        )
        if len(log.errors) > errors_before:
            return self._failed("download", log, errors_before)
        if session.results.bytes_received == 0:
            return {"error": "download moved no data"}
        fields["download_mbps"] = bits / 1e6
        if self.upload and not shutdown.is_set():
            progress("upload", 0.0)
            errors_before = len(log.errors)
            # speedtest-cli raises uploads to 8 threads on any link over 0.1 Mbps; each thread
            # has bytes in flight when time is up, which it counts as sent. The plan's own
            # count keeps that error small on slow uplinks.
            bits = session.upload(
                callback=phase("upload"), threads=threads.upload_threads if threads else None
            )
            if len(log.errors) > errors_before:
                return self._failed("upload", log, errors_before)
            if session.results.bytes_sent == 0:
                return {"error": "upload moved no data"}
            fields["upload_mbps"] = bits / 1e6
        return fields

    def _run_streams(
        self, url: str, timeout: float, shutdown: Shutdown, progress: Progress
    ) -> dict[str, Any]:
        test = self._test = StreamTest(
            url,
            plan=self.streams,
            timeout=timeout,
            stop=shutdown,
            progress=progress,
            rate=self._rate,
        )
        try:
            latency = test.latency()
        except (ConnectionError, ValueError) as e:
            return {"error": str(e)}
        fields: dict[str, Any] = {"latency_ms": latency.median_ms, "jitter_ms": latency.jitter_ms}
        notes: list[str] = []
        last_down, last_up = self._last_mbps or (None, None)
        left = self._budget - test.link_bytes
        reserve = 0.0
        if self.upload:
            reserve = left / 2 if last_up is None else min(left / 2, self._bytes_for(last_up))
        seconds = self._sized("download", left - reserve, last_down, notes)
        if seconds is None:
            return {"skipped": True, "error": notes[0]}
        try:
            return self._phases(test, fields, seconds, left - reserve, last_up, notes)
        except (ConnectionError, TimeoutError) as e:
            return {"error": str(e)[:2048]}

    def _phases(
        self,
        test: StreamTest,
        fields: dict[str, Any],
        seconds: float,
        cap: float,
        last_up: float | None,
        notes: list[str],
    ) -> dict[str, Any]:
        if error := self._phase(test, "download", seconds, cap, fields, notes):
            return {"error": error}
        if self.upload and not test.stop.is_set():
            left = self._budget - test.link_bytes
            up_seconds = self._sized("upload", left, last_up, notes)
            if up_seconds is not None and (
                error := self._phase(test, "upload", up_seconds, left, fields, notes)
            ):
                return {"error": error}
        if notes:
            fields.update(partial=True, note="; ".join(notes)[:512])
        return fields

    def _phase(
        self,
        test: StreamTest,
        direction: Direction,
        seconds: float,
        cap: float,
        fields: dict[str, Any],
        notes: list[str],
    ) -> str | None:
        """Run one direction into `fields`; the error when it moved no data."""
        result = test.phase(direction, seconds, cap)
        if result.mbps is None:
            return f"{direction} moved no data"
        fields[f"{direction}_mbps"] = result.mbps
        if result.stopped_early:
            notes.append(f"{direction} stopped after {result.ran_seconds:.1f} s: {self._left()}")
        return None

    def _bytes_for(self, mbps: float, seconds: float | None = None) -> float:
        """Link bytes a phase of `seconds` at `mbps` is expected to move, with headroom."""
        return mbps * 1e6 / 8 * (seconds or self.phase_seconds) * _PHASE_HEADROOM

    def _left(self) -> str:
        spent = self._test.link_bytes if self._test else 0
        return f"daily data budget ({max(0.0, self._budget - spent) / 1e6:.1f} MB left)"

    def _sized(
        self, stage: str, cap: float, last_mbps: float | None, notes: list[str]
    ) -> float | None:
        """The phase's seconds within `cap` bytes at the last rate; None if it cannot run."""
        seconds = self.phase_seconds
        if last_mbps and self._bytes_for(last_mbps) > cap:
            seconds = cap / self._bytes_for(last_mbps, 1.0)
            if seconds >= _MIN_PHASE_SECONDS:
                notes.append(f"{stage} shortened to {seconds:.1f} s: {self._left()}")
        if seconds < _MIN_PHASE_SECONDS or cap <= 0:
            notes.append(f"{stage} not run: {self._left()}")
            return None
        return seconds

    @staticmethod
    def _failed(stage: str, log: TransferLog, since: int) -> dict[str, Any]:
        errors = log.errors[since:]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return {"error": f"{stage} failed: {errors[0]}{more}"[:2048]}
