"""deploy/mosquitto against a real Mosquitto: per-school credentials from make_credentials.py,
the ACL (a school publishes only under its own id; collectors read all), and TLS for agents."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client
from tests.shipped_broker import DEPLOY, ShippedBroker, make_credentials, shipped_broker


def credentials(tmp_path: Path) -> dict[str, str]:
    users, result = make_credentials(tmp_path, ["HN-A", "HN-B", "bad/id"])
    assert "bad/id" in result.stderr  # named, and skipped
    out = tmp_path / "credentials.csv"
    assert out.stat().st_mode & 0o077 == 0  # plaintext passwords readable by the owner only
    return users


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ShippedBroker]:
    """The shipped config: the deploy ACL, generated passwords, TLS for the schools."""
    with shipped_broker(tmp_path / "broker") as broker:
        yield broker


class Inbox:
    """A collector-side subscriber that records topics and can wait for one."""

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.cond = threading.Condition()

    def on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.topics.append(message.topic)
            self.cond.notify_all()

    def wait_for(self, topic: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: topic in self.topics, 20), self.topics


def connect(settings: BrokerSettings, client_id: str) -> tuple[mqtt.Client, mqtt.ReasonCode]:
    client = new_client(settings, client_id)
    result: list[mqtt.ReasonCode] = []
    done = threading.Event()

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object
    ) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    client.connect(settings.host, settings.port, **connect_properties(settings, True))  # type: ignore[arg-type]
    client.loop_start()
    assert done.wait(20), "no CONNACK"
    return client, result[0]


def test_school_publishes_only_under_its_own_id_over_tls(secured: ShippedBroker) -> None:
    assert set(secured.users) == {"HN-A", "HN-B", "edugap-collector"}
    inbox = Inbox()
    collector, rc = connect(secured.settings("edugap-collector"), "collector-1")
    assert not rc.is_failure
    collector.on_message = inbox.on_message
    collector.subscribe("$share/edugap/edugap/v1/+/+/+", qos=1)
    agent, rc = connect(secured.settings("HN-A"), "HN-A-dev1")
    assert not rc.is_failure
    try:
        # retry the first publish until the collector's subscription is in place
        for _ in range(100):
            agent.publish("edugap/v1/HN-A/dev1/heartbeat", b"{}", qos=1).wait_for_publish(10)
            with inbox.cond:
                if inbox.cond.wait_for(lambda: inbox.topics, 0.2):
                    break
        agent.publish("edugap/v1/HN-B/dev1/heartbeat", b"{}", qos=1).wait_for_publish(10)
        agent.publish("edugap/v1/HN-A/dev1/bandwidth", b"{}", qos=1).wait_for_publish(10)
        inbox.wait_for("edugap/v1/HN-A/dev1/bandwidth")
        # the broker delivers one client's messages in order: HN-B's would have come first
        assert "edugap/v1/HN-B/dev1/heartbeat" not in inbox.topics
    finally:
        agent.disconnect()
        agent.loop_stop()
        collector.disconnect()
        collector.loop_stop()


@pytest.mark.parametrize("who", ["anonymous", "wrong password", "other school's password"])
def test_unknown_or_wrong_credentials_are_refused(secured: ShippedBroker, who: str) -> None:
    username, password = {
        "anonymous": (None, None),
        "wrong password": ("HN-A", "guess"),
        "other school's password": ("HN-A", secured.users["HN-B"]),
    }[who]
    client, rc = connect(
        BrokerSettings(port=secured.plain_port, username=username, password=password), "intruder"
    )
    try:
        assert rc.is_failure
    finally:
        client.loop_stop()


def test_rerun_keeps_existing_users(tmp_path: Path) -> None:
    first = credentials(tmp_path)
    before = (tmp_path / "passwd").read_text()
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "make_credentials.py"), "--registry",
         str(tmp_path / "schools.csv"), "--passwd", str(tmp_path / "passwd"),
         "--out", str(tmp_path / "again.csv")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "nothing to do" in result.stdout
    assert (tmp_path / "passwd").read_text() == before
    assert len(first) == 3


def test_the_deploy_config_itself_starts_and_serves_tls(tmp_path: Path) -> None:
    """deploy/mosquitto/mosquitto.conf with only its paths and ports changed."""
    with shipped_broker(tmp_path) as broker:
        agent, rc = connect(broker.settings("HN-B"), "HN-B-dev1")
        assert not rc.is_failure
        agent.disconnect()
        agent.loop_stop()
        anonymous, rc = connect(BrokerSettings(port=broker.plain_port), "anon")
        anonymous.loop_stop()
        assert rc.is_failure
    assert not broker.errors()
