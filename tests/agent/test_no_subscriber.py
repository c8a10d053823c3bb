"""A broker with no collector subscribed: MQTT 5 answers 'No matching subscribers' (0x10), a
success code, and drops the message. The real agent must keep such reports and send them once a
collector is there, and `edugap-agent status` must say why they wait."""

from __future__ import annotations

import queue
import random
from pathlib import Path
from typing import Any

from edugap.agent.outbox import FILE_NAME, Outbox
from edugap.agent.probes import Identity
from edugap.agent.publisher import Drain, Event, Publisher
from edugap.protocol.mqtt import parse_broker_url
from tests.agent.agentproc import Listener, agent_command, run_agent, wait_for
from tests.agent.test_outbox import heartbeat

__all__ = ["run_agent"]  # fixture used below

HOLD = {"hold_retry_min_seconds": 0.5, "hold_retry_max_seconds": 1.0}


def test_reports_the_broker_could_not_route_wait_in_the_outbox_until_a_collector_subscribes(
    run_agent: Any, broker: Any
) -> None:
    agent = run_agent(outbox=HOLD)
    wait_for(lambda: agent.meta().get("held_since"), what="the agent holding its reports")
    held = wait_for(lambda: agent.outbox_at_least(8), what="reports piling up while held")
    assert agent.meta()["acked_total"] == 0, "a report nobody received counted as delivered"
    assert "No matching subscribers" in agent.log_text()

    status = agent_command("status", "--config", str(agent.config), "--timeout", "5")
    assert status.returncode == 0, status.stdout + status.stderr  # the broker is reachable
    assert "held:" in status.stdout and "no collector is subscribed" in status.stdout

    collector = Listener(broker.url, "edugap/v1/+/+/+", client_id="late-collector")
    try:
        wait_for(
            lambda: {r for r, _ in held} <= {r.report_id for r in collector.reports()},
            what="every held report delivered once a collector subscribed",
        )
        wait_for(lambda: agent.meta().get("held_since") is None, what="the hold released")
        agent.stop()

        def received() -> list[str]:
            return [r.report_id for r in collector.reports() if r.kind != "status"]

        # everything the agent removed from its outbox reached the collector: 0 lost
        acked = agent.meta()["acked_total"]
        wait_for(lambda: len(received()) >= acked, what="every acknowledged report received")
        assert len(received()) == acked == len(set(received())), "a report arrived twice"
        assert acked >= len(held)
    finally:
        collector.close()
    status = agent_command("status", "--config", str(agent.config), "--timeout", "5")
    assert "held:" not in status.stdout


class Loop:
    """The service loop's delivery half, turned by hand: pump, take every answer, commit."""

    def __init__(self, tmp_path: Path, broker_url: str) -> None:
        self.outbox = Outbox(tmp_path / FILE_NAME)
        self.events: queue.Queue[Event] = queue.Queue()
        self.publisher = Publisher(
            parse_broker_url(broker_url), Identity("79000001", "dev1", "test"), self.events
        )
        self.now = 0.0
        self.drain = Drain(
            self.outbox,
            self.publisher,
            max_inflight=10,
            hold_retry=(10.0, 40.0),
            clock=lambda: self.now,
            rng=random.Random(7),
        )
        self.publisher.start()
        wait_for(lambda: self.publisher.connected, what="the agent's connection")

    def turn(self) -> float | None:
        """One pump and every answer to what it sent; returns pump's wait."""
        wait = self.drain.pump()
        while self.drain.inflight:
            event = self.events.get(timeout=20)
            if event.kind == "published":
                self.drain.on_published(event.mid, event.ok, event.reason, event.code)
        self.drain.commit_acks()
        return wait

    def close(self) -> None:
        self.publisher.stop()
        self.outbox.close()


def test_a_held_outbox_tries_one_report_at_a_time_with_a_growing_wait(
    tmp_path: Path, broker: Any
) -> None:
    """While held the agent spends one report per try, not the school's whole backlog."""
    loop = Loop(tmp_path, broker.url)
    try:
        made = [heartbeat(n) for n in range(50)]
        for report in made:
            loop.outbox.add(report)
        loop.turn()
        assert loop.drain.holding and loop.drain.held == 10  # the first window, all unrouted
        waits = []
        for _ in range(3):
            wait = loop.turn()
            assert wait is not None and wait > 0, "a held outbox waits before the next try"
            waits.append(wait)
            loop.now += wait
            loop.turn()  # the try: one report
        assert loop.drain.held == 13
        assert waits[0] < waits[1] < waits[2] <= 40 * 1.25
        assert loop.outbox.depth() == 50 and loop.outbox.stats().held_since is not None

        collector = Listener(broker.url, "edugap/v1/+/+/+", client_id="collector")
        try:
            loop.now += 100
            for _ in range(20):
                loop.turn()
            assert not loop.drain.holding and loop.outbox.depth() == 0
            assert loop.outbox.stats().held_since is None
            wait_for(lambda: len(collector.reports("heartbeat")) >= 50, what="all 50 reports")
            got = [r.report_id for r in collector.reports("heartbeat")]
            assert got == [r.report_id for r in made], "lost, repeated or out of order"
        finally:
            collector.close()
    finally:
        loop.close()
