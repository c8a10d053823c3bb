"""School IT's first hour against the shipped Mosquitto (TLS, per-school passwords, the ACL):
an enrolment that cannot be half right, nothing refused counted as delivered on MQTT 5 or
3.1.1, and every connection fault named in the log and in `edugap-agent status`."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import realparts
from tests.agent.agentproc import AgentProcess, Listener, agent_command, wait_for
from tests.realparts import CountingProxy
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker


def enrolled(
    broker: ShippedBroker, workdir: Path, school: str, user: str, **broker_keys: Any
) -> AgentProcess:
    """An agent of `school` logging in as `user` over TLS (not started)."""
    settings = broker.settings(user)
    keys: dict[str, Any] = {
        "url": f"mqtts://127.0.0.1:{broker.tls_port}",
        "username": user,
        "password": settings.password,
        "ca_file": str(broker.ca),
    }
    keys.update(broker_keys)
    workdir.mkdir(parents=True, exist_ok=True)
    return AgentProcess(
        workdir, keys["url"], broker.tls_port, school={"school_id": school}, broker=keys
    )


def status(agent: AgentProcess) -> Any:
    return agent_command("status", "--config", str(agent.config), "--timeout", "10")


@pytest.fixture
def collector(deploy_broker: ShippedBroker) -> Iterator[Listener]:
    """What a collector receives: every report topic, with the collector's credentials."""
    listener = Listener(deploy_broker.url(COLLECTOR_USER), client_id="collector-listener")
    yield listener
    listener.close()


def test_a_school_id_that_is_not_the_user_name_is_refused_by_check_config(
    deploy_broker: ShippedBroker, tmp_path: Path
) -> None:
    agent = enrolled(deploy_broker, tmp_path, school="HN-B", user="HN-A")
    done = agent_command("check-config", "--config", str(agent.config))
    assert done.returncode == 2
    assert "'broker.username' has value 'HN-A'" in done.stderr
    assert "'school.school_id' has value 'HN-B'" in done.stderr
    assert "broker.username_is_school_id = false" in done.stderr  # how to switch it off
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("version", [5, 3], ids=["mqtt5", "mqtt311"])
def test_reports_the_acl_refuses_are_never_marked_delivered(
    deploy_broker: ShippedBroker, collector: Listener, tmp_path: Path, version: int
) -> None:
    """With the check off, a mismatch reaches the broker: nothing counts as delivered, status
    says why; once the school id is fixed, what is sent arrives once and the rest is counted."""
    wrong = enrolled(
        deploy_broker, tmp_path / "agent", school="HN-B", user="HN-A",
        username_is_school_id=False, mqtt_version=version,
    ).start()  # fmt: skip
    try:
        wait_for(lambda: "not authorised for topic edugap/v1/HN-B/" in wrong.log_text(),
                 what="the refusal in the log")  # fmt: skip
        made = wait_for(lambda: wrong.outbox_at_least(3), what="reports waiting")
        done = status(wrong)
        assert done.returncode == 1, done.stdout
        assert "NOT delivering" in done.stdout
        assert "not authorised for topic edugap/v1/HN-B/" in done.stdout
        assert "school.school_id must equal broker.username" in done.stdout  # the hint
        assert "refused:" in done.stdout  # the service's own record of it
        assert wrong.meta().get("acked_total", 0) == 0, "a refused report counted as delivered"
        assert "trying MQTT 3.1.1" not in wrong.log_text()
    finally:
        wrong.stop()
    assert wrong.meta().get("acked_total", 0) == 0
    assert not collector.reports(), "the broker delivered a report it should have refused"

    fixed = enrolled(deploy_broker, tmp_path / "agent", school="HN-A", user="HN-A",
                     mqtt_version=version).start()  # fmt: skip
    try:
        wait_for(lambda: fixed.meta().get("acked_total", 0) >= 3, what="delivery once fixed")
        assert status(fixed).returncode == 0
    finally:
        fixed.stop()
    meta = fixed.meta()
    # 0 lost: every report the agent counted as delivered reached the collector, once
    wait_for(lambda: len([r for r in collector.reports() if r.kind != "status"])
             >= meta["acked_total"], what="every delivered report received")  # fmt: skip
    got = [r.report_id for r in collector.reports() if r.kind != "status"]
    assert len(got) == len(set(got)) == meta["acked_total"]
    assert {r.school_id for r in collector.reports()} == {"HN-A"}
    # the reports made as HN-B could never be delivered: dropped and counted, not silently lost
    assert meta["dropped_total"] >= len(made)
    assert "made under another school id" in fixed.log_text()


def test_a_wrong_password_is_not_authorised_once_in_the_log_and_never_falls_back(
    deploy_broker: ShippedBroker, tmp_path: Path
) -> None:
    proxy = CountingProxy(deploy_broker.tls_port)
    url = f"mqtts://127.0.0.1:{proxy.port}"
    agent = enrolled(
        deploy_broker, tmp_path, school="HN-A", user="HN-A", password="wrong-password", url=url
    )
    try:
        agent.start()
        wait_for(lambda: proxy.connections >= 4, what="several connection attempts")
        log = agent.log_text()
        assert log.count("refused user 'HN-A' as not authorised") == 1, log  # once, not per try
        assert "broker.password" in log  # the hint
        assert "MQTT 3.1.1" not in log, "bad credentials led to the MQTT 3.1.1 fall-back"
        done = status(agent)
        assert done.returncode == 1
        assert "refused user 'HN-A' as not authorised" in done.stdout
        assert agent.meta().get("acked_total", 0) == 0
    finally:
        proxy.close()
        agent.stop()


def silent_listener() -> socket.socket:
    """A port that accepts TCP connections and never says a word."""
    return socket.create_server(("127.0.0.1", 0))


# name -> (broker keys, text in the log and in status)
FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown CA": ({"ca_file": ""}, "certificate verification failed for 127.0.0.1"),
    "name not in certificate": (
        {"url": "mqtts://localhost:{tls}"}, "The certificate does not name localhost"),
    "closed port": ({"url": "mqtt://127.0.0.1:{free}", "ca_file": ""},
                    "connection refused by 127.0.0.1:{free}"),
    "unknown host": ({"url": "mqtts://no-such-host.invalid:{tls}"},
                     "host no-such-host.invalid not found"),
    "mqtt:// on the TLS port": ({"url": "mqtt://127.0.0.1:{tls}", "ca_file": ""},
                                "use an mqtts:// URL"),
    "mqtts:// on a plain port": ({"url": "mqtts://127.0.0.1:{plain}"},
                                 "TLS handshake with 127.0.0.1:{plain} failed"),
    "no answer": ({"url": "mqtts://127.0.0.1:{silent}"}, "no answer from 127.0.0.1:{silent}"),
    "wrong password": ({"password": "nope"}, "as not authorised"),
}  # fmt: skip


@pytest.mark.parametrize("fault", FAULTS)
def test_each_connection_fault_is_named_in_the_log_and_in_status(
    deploy_broker: ShippedBroker, tmp_path: Path, fault: str
) -> None:
    keys, expected = FAULTS[fault]
    silent = silent_listener()
    ports = {"tls": deploy_broker.tls_port, "plain": deploy_broker.plain_port,
             "free": realparts.free_port(), "silent": silent.getsockname()[1]}  # fmt: skip
    keys = {k: v.format(**ports) if isinstance(v, str) else v for k, v in keys.items()}
    expected = expected.format(**ports)
    agent = enrolled(deploy_broker, tmp_path, school="HN-A", user="HN-A", **keys).start()
    try:
        wait_for(lambda: expected in agent.log_text(), timeout=30, what=f"'{expected}' logged")
        done = status(agent)
        assert done.returncode == 1
        assert "NOT reachable" in done.stdout and expected in done.stdout, done.stdout
        assert "Traceback" not in agent.log_text() + done.stderr
    finally:
        agent.stop()
        silent.close()
