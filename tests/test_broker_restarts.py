"""No report lost to a restart, on the shipped Mosquitto config (TLS, ACL, persistence).

The real agent service and `edugap serve` processes; every test counts the reports the agent
was given against the reports the store holds: all of them, each once.

Why nothing is lost (docs/operations.md, "No report lost to a broker restart"):
- a collector alone subscribes to the report topics itself: Mosquitto restores that
  subscription from its persistence file, so while the collector is away the broker queues
  every report for it, from MQTT 5 and MQTT 3.1.1 agents alike;
- collectors of a group share `$share/<name>/...`, which Mosquitto 2.0 does not restore: until
  one of them is back an MQTT 5 agent hears "No matching subscribers" and keeps its reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edugap.collector.model import BandwidthRow
from edugap.collector.store import open_store
from edugap.protocol.messages import utcnow
from tests.agent.agentproc import wait_for
from tests.restart_parts import (
    CollectorProcess,
    ServiceAgent,
    cleanup,
    reports,
    stored_devices,
)
from tests.shipped_broker import ShippedBroker

KINDS = {
    "own-mqtt5": (False, 5),
    "own-mqtt3": (False, 3),  # a lone collector's own subscription protects 3.1.1 agents too
    "shared-mqtt5": (True, 5),  # a shared one is protected by the agent's hold (MQTT 5 only)
}


def open_store_rows(db_url: str, since: datetime) -> list[BandwidthRow]:
    store = open_store(db_url)
    try:
        return store.bandwidth_since(since)
    finally:
        store.close()


def expect_all_stored(db_url: str, since: object, sent: list[str], timeout: float = 90) -> None:
    def complete() -> bool:
        return set(stored_devices(db_url, since)) >= set(sent)  # type: ignore[arg-type]

    wait_for(complete, timeout=timeout, what=f"all {len(sent)} reports stored")
    counts = stored_devices(db_url, since)  # type: ignore[arg-type]
    ours = {d: n for d, n in counts.items() if d in set(sent)}
    assert len(ours) == len(sent), f"lost: {sorted(set(sent) - set(ours))[:10]}"
    assert all(n == 1 for n in ours.values()), "a report was stored twice"


@pytest.fixture
def parts(
    request: pytest.FixtureRequest, deploy_broker: ShippedBroker, tmp_path: Path
) -> Iterator[tuple[ShippedBroker, CollectorProcess, ServiceAgent]]:
    shared, version = KINDS[request.param]
    db = str(tmp_path / "edugap.db")
    collector = CollectorProcess(tmp_path / "collector", deploy_broker, db, shared=shared)
    agent = ServiceAgent(tmp_path / "agent", deploy_broker, mqtt_version=version)
    try:
        yield deploy_broker, collector, agent
    finally:
        cleanup(agent, collector)


@pytest.mark.parametrize("parts", list(KINDS), indirect=True)
@pytest.mark.parametrize(
    "scenario", ["broker-restart-collector-down", "collector-restart-broker-down", "both-restarted"]
)
def test_no_report_is_lost_to_a_restart(
    parts: tuple[ShippedBroker, CollectorProcess, ServiceAgent], scenario: str
) -> None:
    broker, collector, agent = parts
    since = utcnow() - timedelta(minutes=1)
    first, during, after = reports(10, prefix="a"), reports(20, prefix="b"), reports(10, prefix="c")
    collector.start()
    agent.start().add(first)
    expect_all_stored(collector.db_url, since, [r.device_id for r in first])

    if scenario == "broker-restart-collector-down":
        collector.stop()
        broker.restart()
        agent.add(during)  # the broker must keep them for the collector (or the agent must)
        wait_for(agent.settled, what="the agent's reports answered by the broker")
        collector.start()
    elif scenario == "collector-restart-broker-down":
        broker.stop()
        collector.stop()
        collector.start(wait_ready=False)  # retries the broker meanwhile
        agent.add(during)  # waits in the agent's outbox
        broker.start()
        wait_for(collector.ready, timeout=60, what="the collector back on the broker")
    else:
        collector.stop()
        broker.stop()
        agent.add(during[:10])
        broker.start()
        agent.add(during[10:])
        wait_for(agent.settled, what="the agent's reports answered by the broker")
        collector.start()
    agent.add(after)
    sent = [r.device_id for r in first + during + after]
    expect_all_stored(collector.db_url, since, sent)
    wait_for(lambda: agent.depth() == 0, what="the agent's outbox to empty")


@pytest.mark.parametrize(
    ("collectors", "versions"),
    [(1, (5, 3)), (2, (5, 5))],
    ids=["one-collector-mqtt5-and-mqtt3-agents", "two-shared-collectors-mqtt5-agents"],
)
def test_under_load_two_broker_restarts_lose_nothing(
    deploy_broker: ShippedBroker,
    postgres_url: str,
    tmp_path: Path,
    collectors: int,
    versions: tuple[int, int],
) -> None:
    """3,000 reports at about 300 a second from two schools' agents, the broker restarted
    twice while they flow, collectors running throughout."""
    per_agent, rate = 1500, 150.0
    since = utcnow() - timedelta(minutes=1)
    running = [
        CollectorProcess(
            tmp_path / f"c{n}", deploy_broker, postgres_url, name=f"c{n}", shared=collectors > 1
        )
        for n in range(collectors)
    ]
    agents = [
        ServiceAgent(
            tmp_path / school, deploy_broker, school, mqtt_version=version, per_second=2 * rate
        )
        for school, version in zip(("HN-A", "HN-B"), versions, strict=True)
    ]
    try:
        for collector in running:
            collector.start()
        made = {a: reports(per_agent, a.service.config.school_id, prefix="L") for a in agents}
        feeds = [a.start().feed(made[a], rate) for a in agents]
        for mark in (1, 2):
            wait_for(
                lambda m=mark: sum(a.fed for a in agents) >= m * len(agents) * per_agent // 3,
                timeout=60,
                what=f"the agents' reports flowing ({mark}/3)",
            )
            deploy_broker.restart()
        for feed in feeds:
            feed.join()
        sent = {f"{a.service.config.school_id}/{r.device_id}" for a in agents for r in made[a]}
        assert len(sent) == len(agents) * per_agent

        def stored() -> set[str]:
            return {f"{r.school_id}/{r.device_id}" for r in open_store_rows(postgres_url, since)}

        wait_for(lambda: sent <= stored(), timeout=180, what="every report stored")
        rows = [f"{r.school_id}/{r.device_id}" for r in open_store_rows(postgres_url, since)]
        assert len([r for r in rows if r in sent]) == len(sent), "a report was stored twice"
        for agent in agents:
            wait_for(lambda a=agent: a.depth() == 0, what="the agents' outboxes to empty")
    finally:
        cleanup(*agents, *running)
