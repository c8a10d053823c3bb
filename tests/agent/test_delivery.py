"""Durable delivery, end to end: the real `edugap-agent run` against a real Mosquitto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edugap.protocol import messages as protocol
from tests import realparts
from tests.agent.agentproc import (
    ROOT,
    AgentProcess,
    Listener,
    clean_env,
    listener,
    make_certificates,
    run_agent,
    wait_for,
)

__all__ = ["listener", "run_agent"]  # fixtures used by the tests below

SCHOOL = "79000001"


def device_of(agent: AgentProcess) -> str:
    path = agent.state_dir / "device_id"
    return wait_for(lambda: path.exists() and path.read_text().strip(), what="device id file")


def retained_status(url: str, name: str) -> protocol.Status | None:
    """What a newcomer sees on the status topics: the retained presence message."""
    fresh = Listener(url, "edugap/v1/+/+/status", client_id=name)
    try:
        wait_for(lambda: fresh.poll(), timeout=5, what="retained status")
        statuses = [r for r in fresh.reports() if isinstance(r, protocol.Status)]
        return statuses[-1] if statuses else None
    finally:
        fresh.close()


def test_reports_arrive_on_documented_topics_and_presence_is_retained(
    run_agent: Any, listener: Listener, broker: Any
) -> None:
    agent = run_agent()
    device = device_of(agent)
    wait_for(
        lambda: len(listener.reports("heartbeat")) >= 2 and listener.reports("inventory"),
        what="an inventory and two heartbeats",
    )
    for topic, payload, _ in listener.poll():
        report = protocol.decode(topic, payload)  # raises if the collector would reject it
        assert topic == protocol.topic_for(SCHOOL, device, report.kind)
        assert (report.school_id, report.device_id) == (SCHOOL, device)
    heartbeat = listener.reports("heartbeat")[-1]
    assert isinstance(heartbeat, protocol.Heartbeat)
    assert heartbeat.reachable is True  # its availability target is the broker itself
    assert heartbeat.dropped_reports == 0

    status = retained_status(broker.url, "newcomer-1")
    assert status is not None and status.state == "online"

    agent.kill()  # no clean disconnect: only the last will can say offline
    wait_for(
        lambda: (
            (s := retained_status(broker.url, "newcomer-2")) is not None and s.state == "offline"
        ),
        what="retained offline status from the last will",
    )


def test_reports_made_while_broker_is_down_arrive_once_and_in_order(
    run_agent: Any, listener: Listener, broker: Any
) -> None:
    agent = run_agent()
    wait_for(lambda: listener.reports("heartbeat"), what="a first heartbeat")
    broker.stop()
    waiting = wait_for(lambda: agent.outbox_at_least(6), what="reports piling up in the outbox")
    made_during_outage = {report_id for report_id, _ in waiting}
    broker.start()

    def delivered() -> set[str]:
        return {r.report_id for r in listener.reports()}

    wait_for(lambda: made_during_outage <= delivered(), what="every report made during the outage")
    reports = [r for r in listener.reports() if r.kind != "status"]
    ids = [r.report_id for r in reports]
    assert len(ids) == len(set(ids)), "a report arrived twice"
    times = [r.measured_at for r in reports]
    assert times == sorted(times), "reports arrived out of the order they were made"
    assert "disconnected from broker" in agent.log_text()


def test_nothing_is_lost_when_the_agent_is_killed_with_a_full_outbox(
    run_agent: Any, listener: Listener, broker: Any
) -> None:
    broker.stop()
    agent = run_agent(outbox={"drain_per_second": 50})  # the backlog drains rate-limited
    before_kill = wait_for(lambda: agent.outbox_at_least(5), what="an outbox holding reports")
    agent.kill()
    ids = {report_id for report_id, _ in agent.outbox()}
    assert {report_id for report_id, _ in before_kill} <= ids  # kill -9 kept every row
    agent.start()  # same state dir: same device, same outbox
    wait_for(lambda: len(agent.outbox()) > len(ids), what="the restarted agent adding reports")
    broker.start()
    wait_for(
        lambda: ids <= {r.report_id for r in listener.reports()},
        what="every report from before the kill",
    )
    wait_for(lambda: not agent.outbox(), what="an empty outbox")
    devices = {r.device_id for r in listener.reports()}
    assert len(devices) == 1, "the restarted agent must keep its device id"


def test_full_outbox_drops_the_oldest_and_the_next_heartbeat_says_how_many(
    run_agent: Any, listener: Listener, broker: Any
) -> None:
    broker.stop()
    agent = run_agent(outbox={"max_rows": 5})
    wait_for(lambda: agent.meta().get("dropped_total", 0) >= 4, what="the outbox dropping reports")
    broker.start()
    wait_for(
        lambda: any(
            isinstance(r, protocol.Heartbeat) and r.dropped_reports for r in listener.reports()
        ),
        what="a heartbeat reporting dropped reports",
    )
    wait_for(lambda: not agent.outbox(), what="an empty outbox")
    agent.stop()
    counts = agent.meta()
    reported = sum(r.dropped_reports for r in listener.reports("heartbeat"))  # type: ignore[union-attr]
    # every drop is reported exactly once: by a delivered heartbeat, or still pending
    assert reported + counts["dropped_pending"] == counts["dropped_total"]
    assert reported > 0
    # the oldest went first: the inventory made at start never arrived
    assert not listener.reports("inventory")


def test_scheduled_speed_tests_are_reported_and_the_daily_budget_skips_them(
    run_agent: Any, listener: Listener, speedtest_server: Any
) -> None:
    url, _ = speedtest_server()
    # tests all day, every day, a couple of seconds apart on average
    often = {
        "speedtests_per_day": 40000,
        "school_hours": "00:00-24:00",
        "school_days": "mon-sun",
        "timezone": "UTC",
        "max_start_delay_seconds": 0,
    }
    bandwidth = {
        "role": True,
        "backend": "selfhosted",
        "server_url": url,
        "timeout_seconds": 4,
        "seconds": 1,
        "streams": 2,
    }
    tester = run_agent("tester", schedule=often, bandwidth={**bandwidth, "daily_budget_mb": 1e5})
    frugal = run_agent("frugal", schedule=often, bandwidth={**bandwidth, "daily_budget_mb": 0.01})
    tester_id, frugal_id = device_of(tester), device_of(frugal)

    def bandwidth_from(device: str) -> list[protocol.Bandwidth]:
        return [
            r
            for r in listener.reports("bandwidth")
            if isinstance(r, protocol.Bandwidth) and r.device_id == device
        ]

    measured = wait_for(
        lambda: [r for r in bandwidth_from(tester_id) if r.succeeded], what="a measured speed test"
    )
    assert measured[0].download_mbps and measured[0].bytes_used > 0
    skipped = wait_for(lambda: bandwidth_from(frugal_id), what="a skipped speed test")
    assert skipped[0].skipped and "budget" in (skipped[0].error or "")
    assert skipped[0].bytes_used == 0


def test_falls_back_to_mqtt_3_when_the_broker_refuses_mqtt_5(tmp_path: Path) -> None:
    """amqtt speaks only MQTT 3.1.1: the agent, configured for 5, must still deliver."""
    pytest.importorskip("amqtt", reason="the collector extra provides amqtt")
    port = realparts.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "edugap.collector.demo.amqtt_broker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=clean_env(),
    )
    try:
        realparts.wait_port(port)
        url = f"mqtt://127.0.0.1:{port}"
        listener = Listener(url, mqtt_version=3)
        # amqtt ignores an MQTT 5 CONNECT: a short keep-alive makes the silence short
        agent = AgentProcess(tmp_path, url, port, broker={"keepalive": 2}).start()
        try:
            device = device_of(agent)
            wait_for(
                lambda: listener.reports("heartbeat"), timeout=40, what="a heartbeat via amqtt"
            )
            assert {r.device_id for r in listener.reports()} == {device}
            assert "trying MQTT 3.1.1" in agent.log_text()
        finally:
            agent.stop()
            listener.close()
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("mutual", [False, True], ids=["ca-only", "client-certificate"])
def test_delivers_over_tls(tmp_path: Path, mutual: bool) -> None:
    certs = make_certificates(tmp_path / "certs")
    tls_port = realparts.free_port()
    extra = (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {certs['ca']}\ncertfile {certs['server']}\nkeyfile {certs['server_key']}\n"
        + ("require_certificate true\n" if mutual else "")
    )
    tls: dict[str, Any] = {"ca_file": str(certs["ca"])}
    if mutual:
        tls.update(cert_file=str(certs["client"]), key_file=str(certs["client_key"]))
    with realparts.mosquitto(tmp_path / "mosquitto", extra_config=extra) as broker:
        listener = Listener(broker.url)  # plain listener of the same broker
        (tmp_path / "agent").mkdir()
        url = f"mqtts://127.0.0.1:{tls_port}"
        agent = AgentProcess(tmp_path / "agent", url, broker.port, broker=tls).start()
        try:
            wait_for(lambda: listener.reports("heartbeat"), what="a heartbeat over TLS")
            assert f"connected to {url}" in agent.log_text()
        finally:
            agent.stop()
            listener.close()
