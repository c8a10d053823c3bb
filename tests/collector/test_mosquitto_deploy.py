"""deploy/mosquitto against a real Mosquitto: per-school credentials from make_credentials.py,
the ACL (a school publishes only under its own id; collectors read all), and TLS for agents."""

from __future__ import annotations

import csv
import getpass
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.mqtt import BrokerSettings, connect_properties, new_client
from tests import realparts

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"


def make_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (ca.crt, server.crt, server.key)."""
    openssl = realparts.require_tool("openssl", "openssl")
    where.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=edugap test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"


def credentials(tmp_path: Path) -> dict[str, str]:
    realparts.require_tool("mosquitto_passwd", "mosquitto")
    registry = tmp_path / "schools.csv"
    registry.write_text("school_id,name\nHN-A,A\nHN-B,B\nbad/id,C\n", encoding="utf-8")
    out = tmp_path / "credentials.csv"
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "make_credentials.py"), "--registry", str(registry),
         "--passwd", str(tmp_path / "passwd"), "--out", str(out),
         "--collector", "edugap-collector"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "bad/id" in result.stderr  # named, and skipped
    assert out.stat().st_mode & 0o077 == 0  # plaintext passwords readable by the owner only
    with out.open() as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[realparts.Mosquitto, int, Path, dict[str, str]]]:
    """A Mosquitto with the deploy ACL, generated passwords and a TLS listener."""
    users = credentials(tmp_path)
    ca, cert, key = make_certificates(tmp_path / "certs")
    shutil.copy(DEPLOY / "acl", tmp_path / "acl")
    tls_port = realparts.free_port()
    extra = (
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
        f"acl_file {tmp_path / 'acl'}\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"certfile {cert}\nkeyfile {key}\ntls_version tlsv1.2\n"
    )
    with realparts.mosquitto(tmp_path / "broker", extra) as broker:
        realparts.wait_port(tls_port)
        yield broker, tls_port, ca, users


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


def test_school_publishes_only_under_its_own_id_over_tls(
    secured: tuple[realparts.Mosquitto, int, Path, dict[str, str]],
) -> None:
    broker, tls_port, ca, users = secured
    assert set(users) == {"HN-A", "HN-B", "edugap-collector"}
    inbox = Inbox()
    collector, rc = connect(
        BrokerSettings(port=broker.port, username="edugap-collector",
                       password=users["edugap-collector"]), "collector-1",
    )  # fmt: skip
    assert not rc.is_failure
    collector.on_message = inbox.on_message
    collector.subscribe("$share/edugap/edugap/v1/+/+/+", qos=1)
    agent, rc = connect(
        BrokerSettings(port=tls_port, tls=True, ca_file=str(ca), username="HN-A",
                       password=users["HN-A"]), "HN-A-dev1",
    )  # fmt: skip
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
def test_unknown_or_wrong_credentials_are_refused(
    secured: tuple[realparts.Mosquitto, int, Path, dict[str, str]], who: str
) -> None:
    broker, _tls_port, _ca, users = secured
    username, password = {
        "anonymous": (None, None),
        "wrong password": ("HN-A", "guess"),
        "other school's password": ("HN-A", users["HN-B"]),
    }[who]
    client, rc = connect(BrokerSettings(port=broker.port, username=username, password=password),
                         "intruder")  # fmt: skip
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
    exe = realparts.find_mosquitto()
    if exe is None:
        realparts.missing("mosquitto", "install the Debian package 'mosquitto'")
    users = credentials(tmp_path)
    ca, cert, key = make_certificates(tmp_path / "certs")
    tls_port, plain_port = realparts.free_port(), realparts.free_port()
    (tmp_path / "data").mkdir()
    conf = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    for old, new in {
        "/etc/mosquitto/edugap/passwd": str(tmp_path / "passwd"),
        "/etc/mosquitto/edugap/acl": str(DEPLOY / "acl"),
        "/etc/mosquitto/certs/server.crt": str(cert),
        "/etc/mosquitto/certs/server.key": str(key),
        "/var/lib/mosquitto/": f"{tmp_path / 'data'}/",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "log_dest syslog": f"log_dest file {tmp_path / 'mosquitto.log'}",
    }.items():
        assert old in conf, f"{old} is no longer in the deploy config: update this test"
        conf = conf.replace(old, new)
    # run as whoever runs the tests: as root, Mosquitto would otherwise switch to the user
    # `mosquitto`, who cannot read pytest's private temporary directory
    conf += f"user {getpass.getuser()}\n"
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    proc = subprocess.Popen([exe or "mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        realparts.wait_port(tls_port)
        agent, rc = connect(
            BrokerSettings(port=tls_port, tls=True, ca_file=str(ca), username="HN-B",
                           password=users["HN-B"]), "HN-B-dev1",
        )  # fmt: skip
        assert not rc.is_failure
        agent.disconnect()
        agent.loop_stop()
        anonymous, rc = connect(BrokerSettings(port=plain_port), "anon")
        anonymous.loop_stop()
        assert rc.is_failure
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert b"Error" not in err, err.decode()
