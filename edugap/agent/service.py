"""The agent service (`edugap-agent run`): scheduler, probes, outbox and publisher on one thread.

One thread owns the outbox and the schedule. It waits on a queue for whatever comes first: a
broker event from paho's thread, a finished speed test from its worker thread, or the next due
job. A failing probe or a full disk is logged and the service goes on; only stop() ends it.
"""

from __future__ import annotations

import gc
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edugap.agent import __version__, state
from edugap.agent.config import AgentConfig, load_zone
from edugap.agent.outbox import FILE_NAME, Outbox
from edugap.agent.publisher import Drain, Event, Publisher
from edugap.agent.roundtrip import RoundTrip
from edugap.agent.scheduler import (
    AVAILABILITY,
    HEARTBEAT,
    INVENTORY,
    SPEEDTEST,
    Scheduler,
    within_budget,
)
from edugap.protocol import messages as protocol
from edugap.protocol.mqtt import Cause, new_client

if TYPE_CHECKING:
    from edugap.agent.probes import AvailabilityProbe, BandwidthProbe, Identity, TrafficProbe

log = logging.getLogger("agent")

# Never sleep longer than this between looks at the clock: a wall-clock jump (NTP, suspend) is
# then noticed within a few seconds.
MAX_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Measured:
    """A speed test finished on its worker thread."""

    report: protocol.Bandwidth


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


def identity_for(config: AgentConfig, device_id: str) -> Identity:
    from edugap.agent.probes import Identity

    return Identity(config.school_id, device_id, __version__, config.bandwidth.role)


def bandwidth_probe(
    config: AgentConfig, backend: str | None = None, server_url: str | None = None
) -> BandwidthProbe:
    """The configured speed-test probe; `backend`/`server_url` override the config's."""
    # imported only now: speedtest-cli is the agent's heaviest module
    from edugap.agent.probes import BandwidthProbe, TrafficProbe
    from edugap.agent.probes.streams import StreamPlan

    bw = config.bandwidth
    return BandwidthProbe(
        backend=backend or bw.backend,  # type: ignore[arg-type]
        server_url=server_url or bw.server_url,
        timeout_s=bw.timeout_seconds,
        traffic=TrafficProbe(),
        streams=StreamPlan(seconds=bw.seconds, streams=bw.streams),
    )


class Service:
    """The long-running agent."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], datetime] = protocol.utcnow,
        client_factory: Callable[..., Any] = new_client,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self.state_dir = Path(config.state_dir)
        self.events: queue.Queue[Any] = queue.Queue()
        self.identity = identity_for(config, state.device_id(self.state_dir))
        self.outbox = Outbox(
            self.state_dir / FILE_NAME,
            max_rows=config.outbox.max_rows,
            max_bytes=int(config.outbox.max_mb * 1024 * 1024),
        )
        broker = config.broker
        self.publisher = Publisher(
            broker.settings(),
            self.identity,
            self.events,
            reconnect=(broker.reconnect_min_seconds, broker.reconnect_max_seconds),
            max_inflight=config.outbox.max_inflight,
            client_factory=client_factory,
            rng=self._rng,
        )
        retry = (config.outbox.hold_retry_min_seconds, config.outbox.hold_retry_max_seconds)
        self.proof = RoundTrip(
            self.identity.school_id,
            self.identity.device_id,
            self.publisher.publish,
            retry=retry,
            on_change=self._refusal_changed,
            rng=self._rng,
        )
        self.drain = Drain(
            self.outbox,
            self.publisher,
            max_inflight=config.outbox.max_inflight,
            per_second=config.outbox.drain_per_second,
            hold_retry=retry,
            rng=self._rng,
            proof=self.proof,
        )
        self._cause: str | None = None  # the connection failure last logged
        self._connected = False
        self._stopping = threading.Event()
        self._speedtest: threading.Thread | None = None
        self._availability: AvailabilityProbe | None = None
        self._traffic: TrafficProbe | None = None
        self._bandwidth: BandwidthProbe | None = None
        self._backlog = 0

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end (safe from signal handlers and other threads)."""
        self._stopping.set()
        self.events.put(_Stop())

    def run(self) -> int:
        """Run until stop(); returns the process exit code."""
        cfg = self.config
        if not cfg.enrolled:
            log.warning("no school.school_id set: reporting as %r", cfg.school_id)
        log.info(
            "edugap-agent %s starting: school %s, device %s, state %s, config %s",
            __version__,
            self.identity.school_id,
            self.identity.device_id,
            self.state_dir,
            cfg.source,
        )
        now = self._clock()
        today = now.astimezone(load_zone(cfg.schedule.timezone)).date()
        # tests already done today (before a restart) count against today's number of tests
        usage = state.read_usage(self.state_dir, today)
        self.scheduler = Scheduler(
            cfg.schedule,
            start=now,
            speedtests=cfg.bandwidth.role,
            tests_done_today=usage.tests,
            rng=self._rng,
        )
        plan = ", ".join(t.isoformat(timespec="minutes") for t in self.scheduler.speedtest_plan)
        log.info("speed tests planned today: %s", plan or "none")
        # a hold recorded by an earlier run is learnt again from the broker's answers
        self.outbox.release()
        # the broker's ACL is per school: reports made under an earlier school id never pass
        foreign = self.outbox.drop_other_topics(f"{protocol.TOPIC_ROOT}/{self.identity.school_id}/")
        if foreign:
            log.warning(
                "dropped %d report(s) made under another school id (the broker would refuse "
                "them for good); the next heartbeat counts them in dropped_reports",
                foreign,
            )
        depth = self.outbox.depth()
        if depth:
            log.info("outbox holds %d report(s) from before; they go first", depth)
        self.publisher.start()
        try:
            self._loop()
        finally:
            self.publisher.stop()
            self.drain.commit_acks()
            self.outbox.close()
            log.info("stopped")
        return 0

    def _loop(self) -> None:
        while not self._stopping.is_set():
            wait = (self.scheduler.next_at() - self._clock()).total_seconds()
            try:
                rate_wait = self.drain.pump()
            except Exception:
                # e.g. the disk went away under the outbox: say so, wait, try again
                log.exception("cannot read the outbox; retrying")
                rate_wait = MAX_WAIT_SECONDS
            if rate_wait is not None:
                wait = min(wait, rate_wait)
            try:
                item = self.events.get(timeout=min(max(wait, 0.0), MAX_WAIT_SECONDS))
                self._safely(item)
                while True:  # take everything already waiting, then commit acks once
                    self._safely(self.events.get_nowait())
            except queue.Empty:
                pass
            self._commit()
            for job in self.scheduler.due(self._clock()):
                self._run_job(job)

    def _safely(self, item: Any) -> None:
        try:
            self._handle(item)
        except Exception:
            log.exception("could not handle %r; going on", item)

    def _handle(self, item: Any) -> None:
        if isinstance(item, Event):
            if item.kind == "published":
                self.drain.on_published(item.mid, item.ok, item.reason, item.code)
            elif item.kind == "echo":
                self.proof.on_echo(item.payload)
            elif item.kind == "connected":
                self._connected, self._cause = True, None
                self._backlog = self.outbox.depth()
                log.info(
                    "connected to %s (MQTT %s); %d report(s) to send once the broker is seen "
                    "to accept them",
                    self.publisher.settings.url,
                    self.publisher.settings.mqtt_version,
                    self._backlog,
                )
                self.proof.connected(self.publisher.settings)
                self.publisher.announce_online()
            elif item.kind == "refused_version":
                self.publisher.fall_back_to_mqtt3()
            elif item.kind in ("refused", "connect_failed"):
                self._connection_failed(item.cause)
            elif item.kind == "disconnected":
                self.drain.on_disconnected()
                if self._connected:
                    self._connected = False
                    self._cause = None
                    log.warning("disconnected from broker (%s); will reconnect", item.reason)
                else:
                    self._connection_failed(item.cause)
        elif isinstance(item, _Measured):
            self._speedtest_done(item.report)

    def _connection_failed(self, cause: Cause | None) -> None:
        """Log why the broker cannot be reached, once per change of cause (not every retry)."""
        if cause is None or str(cause) == self._cause:
            return
        self._cause = str(cause)
        log.warning(
            "cannot connect to %s: %s (%s; trying again, logged again when the cause changes)",
            self.publisher.settings.url,
            cause,
            cause.kind,
        )

    def _refusal_changed(self, cause: Cause | None) -> None:
        try:
            self.outbox.refuse(None if cause is None else str(cause))
        except Exception:
            log.exception("cannot record the broker's refusal in the outbox")

    def _commit(self) -> None:
        try:
            removed = self.drain.commit_acks()
        except Exception:
            log.exception("cannot remove acknowledged reports from the outbox")
            return
        if removed and self._backlog and self.outbox.depth() == 0:
            log.info("drained %d report(s); outbox empty", max(self._backlog, removed))
            self._backlog = 0

    def _enqueue(self, report: protocol.Report) -> None:
        try:
            self.outbox.add(report)
        except Exception:
            log.exception("cannot store a %s report in the outbox", report.kind)

    # --- jobs ------------------------------------------------------------------------------

    def _run_job(self, job: str) -> None:
        try:
            if job == INVENTORY:
                from edugap.agent.probes import InventoryProbe

                self._enqueue(InventoryProbe().collect(self.identity))
                log.info("inventory taken")
            elif job == AVAILABILITY:
                self._availability_probe().check()
            elif job == HEARTBEAT:
                self._heartbeat()
            elif job == SPEEDTEST:
                self._start_speedtest()
        except Exception:
            log.exception("%s job failed; will try again at its next time", job)

    def _availability_probe(self) -> AvailabilityProbe:
        if self._availability is None:
            from edugap.agent.probes import AvailabilityProbe

            self._availability = AvailabilityProbe(
                list(self.config.availability_targets),
                timeout_s=self.config.availability.timeout_seconds,
            )
        return self._availability

    def _traffic_probe(self) -> TrafficProbe:
        if self._traffic is None:
            from edugap.agent.probes import TrafficProbe

            self._traffic = TrafficProbe()
            self._traffic.rates()  # the first call only sets the baseline
        return self._traffic

    def _heartbeat(self) -> None:
        summary = self._availability_probe().summary(reset=True)
        link = self._traffic_probe().rates()

        def build(depth: int, dropped: int) -> protocol.Report:
            return summary.heartbeat(
                self.identity,
                measured_at=self._clock(),
                queue_depth=depth,
                dropped_reports=dropped,
                link=link,
            )

        try:
            report = self.outbox.add_claiming_dropped(build)
        except Exception:
            log.exception("cannot store a heartbeat in the outbox")
            return
        assert isinstance(report, protocol.Heartbeat)
        if report.dropped_reports:
            log.warning("heartbeat reports %d dropped report(s)", report.dropped_reports)

    def _bandwidth_probe(self) -> BandwidthProbe:
        if self._bandwidth is None:
            self._bandwidth = bandwidth_probe(self.config)
        return self._bandwidth

    def _start_speedtest(self) -> None:
        if self._speedtest is not None and self._speedtest.is_alive():
            log.info("speed test still running; skipping this one")
            return
        probe = self._bandwidth_probe()
        usage = state.read_usage(self.state_dir, self.scheduler.local_day(self._clock()))
        estimate = probe.estimated_bytes()
        budget = self.config.bandwidth.daily_budget_mb
        if not within_budget(usage.bytes_used, estimate, budget):
            reason = (
                f"daily data budget: {usage.bytes_used / 1e6:.0f} MB used today, this test"
                f" needs about {estimate / 1e6:.0f} MB, budget {budget:g} MB"
            )
            log.info("speed test skipped: %s", reason)
            self._enqueue(probe.skipped_report(self.identity, reason))
            return

        left = budget * 1_000_000 - usage.bytes_used

        def work() -> None:
            try:
                # the test sizes its phases to what the day's budget has left
                report = probe.collect(self.identity, budget_bytes=left)
            except Exception as e:  # collect() promises not to raise; be safe anyway
                log.exception("speed test crashed")
                report = probe.skipped_report(self.identity, f"speed test crashed: {e}")
            # The test's sessions, threads and buffers are garbage now; reference cycles among
            # them (tracebacks, thread objects) would otherwise wait for the next collection.
            gc.collect()
            self.events.put(_Measured(report))

        log.info("speed test starting (%s)", self.config.bandwidth.backend)
        self._speedtest = threading.Thread(target=work, name="speedtest", daemon=True)
        self._speedtest.start()

    def _speedtest_done(self, report: protocol.Bandwidth) -> None:
        if report.error:
            log.warning("speed test failed: %s", report.error)
        else:
            log.info(
                "speed test done: down %.1f Mbps, up %s Mbps, %d bytes",
                report.download_mbps or 0,
                f"{report.upload_mbps:.1f}" if report.upload_mbps is not None else "-",
                report.bytes_used,
            )
        self._enqueue(report)
        try:
            day = self.scheduler.local_day(report.measured_at)
            usage = state.read_usage(self.state_dir, day).add(report.bytes_used)
            state.write_usage(self.state_dir, usage)
        except OSError:
            log.exception("cannot record today's speed-test usage")
