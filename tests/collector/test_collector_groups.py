"""The collector's identity and groups on the shipped Mosquitto config, counting sent against
stored: a school's credentials cannot take over, wipe or share the collector's session, and a
stopped collector of a group is retired without losing what its session queued."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edugap.collector.collectors import default_name, fingerprint
from edugap.protocol.messages import utcnow
from edugap.protocol.mqtt import connect_properties, new_client
from tests.agent.agentproc import wait_for
from tests.restart_parts import (
    CollectorProcess,
    ServiceAgent,
    cleanup,
    reports,
    stored_devices,
)
from tests.shipped_broker import ShippedBroker

#: client ids a school could try: the one documented before, and guesses from what it knows
GUESSES = ["edugap-collector", "collector-1", default_name(), "edugap-collector-edugap", "edugap"]


class Impostor:
    """A client with a school's credentials, connecting under another client id."""

    def __init__(self, broker: ShippedBroker, client_id: str, *, clean: bool, version: int = 5):
        settings = broker.settings("HN-B", mqtt_version=version)
        self.client = new_client(settings, client_id, clean_start=clean)
        self.received: list[str] = []
        self.session_present: bool | None = None
        answered = threading.Event()

        def on_connect(_c: object, _u: object, flags: Any, _rc: object, _p: object) -> None:
            self.session_present = flags.session_present
            answered.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append(m.topic)
        self.client.connect(settings.host, settings.port, **connect_properties(settings, clean))  # type: ignore[arg-type]
        self.client.loop_start()
        assert answered.wait(20), "no CONNACK"

    def subscribe(self, *filters: str) -> Impostor:
        for f in filters:
            self.client.subscribe(f, qos=1)
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def commands(collector: CollectorProcess, *args: str) -> tuple[int, str]:
    done = collector.command("collectors", *args)
    return done.returncode, done.stdout + done.stderr


def listed(collector: CollectorProcess) -> dict[str, dict[str, Any]]:
    code, out = commands(collector, "list", "--json")
    assert code == 0, out
    return {row["name"]: row for row in map(json.loads, out.splitlines())}


@pytest.fixture
def school(deploy_broker: ShippedBroker, tmp_path: Path) -> Iterator[ServiceAgent]:
    """HN-A's agent service (MQTT 5, TLS), fed reports by the test."""
    agent = ServiceAgent(tmp_path / "agent", deploy_broker, "HN-A").start()
    yield agent
    agent.stop()


def test_a_school_cannot_take_over_or_wipe_the_collectors_session(
    deploy_broker: ShippedBroker, school: ServiceAgent, tmp_path: Path
) -> None:
    since = utcnow() - timedelta(minutes=1)
    collector = CollectorProcess(tmp_path / "c", deploy_broker, str(tmp_path / "edugap.db"))
    impostors: list[Impostor] = []
    try:
        collector.start()
        batches = [reports(10, prefix="a"), reports(50, prefix="b"), reports(20, prefix="c")]
        school.add(batches[0])
        wait_for(lambda: len(stored_devices(collector.db_url, since)) == 10, what="10 stored")

        # collector away: its session queues; a school wipes whatever session it can name
        collector.stop()
        school.add(batches[1])
        wait_for(lambda: school.depth() == 0, what="the broker taking the 50 reports")
        for guess in GUESSES:
            Impostor(deploy_broker, guess, clean=True).close()
            Impostor(deploy_broker, guess, clean=True, version=3).close()
        collector.start()
        wait_for(lambda: len(stored_devices(collector.db_url, since)) == 60, what="60 stored")
        assert "session present: True" in collector.log_text()

        # collector running: the guesses connect and stay, and try to read the reports
        impostors = [
            Impostor(deploy_broker, guess, clean=False).subscribe(
                "edugap/v1/#", "$share/edugap/edugap/v1/+/+/+"
            )
            for guess in GUESSES
        ]
        school.add(batches[2])
        sent = {r.device_id for batch in batches for r in batch}
        wait_for(lambda: set(stored_devices(collector.db_url, since)) >= sent, what="80 stored")
        counts = stored_devices(collector.db_url, since)
        assert sum(counts[d] for d in sent) == len(sent), "a report was stored twice"
        assert "disconnected from" not in collector.log_text(), "the collector was kicked off"
        assert not any(i.received for i in impostors), "a school read other schools' reports"
    finally:
        for impostor in impostors:
            impostor.close()
        collector.stop()


@pytest.fixture
def group(
    deploy_broker: ShippedBroker, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[CollectorProcess, CollectorProcess]]:
    """Collectors a and b of group `edugap`, sharing the reports, on one PostgreSQL."""
    a, b = (
        CollectorProcess(tmp_path / n, deploy_broker, postgres_url, name=n, shared=True)
        for n in "ab"
    )
    try:
        yield a.start(), b.start()
    finally:
        cleanup(a, b)


def test_a_school_cannot_join_a_groups_shared_subscription(
    deploy_broker: ShippedBroker,
    group: tuple[CollectorProcess, CollectorProcess],
    school: ServiceAgent,
) -> None:
    """Mosquitto's acl_file lets any account subscribe; a school under the group's $share name
    would be handed a share of the reports and, denied read, lose them."""
    a, _b = group
    since = utcnow() - timedelta(minutes=1)
    thieves = [
        Impostor(deploy_broker, f"thief-{n}", clean=False).subscribe(
            "$share/edugap/edugap/v1/+/+/+", "$share/edugap/#"
        )
        for n in range(2)
    ]
    try:
        sent = reports(200)
        school.add(sent)
        wait_for(
            lambda: set(stored_devices(a.db_url, since)) >= {r.device_id for r in sent},
            what="all 200 reports stored by the group",
        )
        assert not any(t.received for t in thieves)
    finally:
        for thief in thieves:
            thief.close()


def test_retiring_a_stopped_collector_stores_its_queued_share(
    group: tuple[CollectorProcess, CollectorProcess], school: ServiceAgent
) -> None:
    a, b = group
    since = utcnow() - timedelta(minutes=1)
    rows = listed(a)
    assert {n: (r["condition"], r["shared"]) for n, r in rows.items()} == {
        "a": ("running", True),
        "b": ("running", True),
    }
    code, out = commands(a, "client-id", "b")  # what an operator pins before a password change
    assert code == 0 and fingerprint(out.strip()) == rows["b"]["client_id_hash"]
    b.stop()
    assert listed(a)["b"]["condition"] == "stopped"

    first = reports(400, prefix="q")
    school.add(first)
    wait_for(lambda: school.depth() == 0, what="the broker taking the 400 reports")
    wait_for(lambda: len(stored_devices(a.db_url, since)) >= 100, what="a storing its share")
    # b's session still takes its share: those wait there, stored by nobody
    assert len(stored_devices(a.db_url, since)) < len(first)

    code, out = commands(a, "retire", "a")
    assert code == 1 and "is running" in out
    code, out = commands(a, "retire", "b", "--client-id", "not-its-id")
    assert code == 1 and "--client-id" in out
    code, out = commands(a, "retire", "b")  # from a's host, with a's configuration
    assert code == 0, out
    assert "retired" in out
    counts = stored_devices(a.db_url, since)
    assert set(counts) == {r.device_id for r in first}, "lost reports"
    assert set(counts.values()) == {1}, "a report was stored twice"
    assert listed(a)["b"]["condition"] == "retired"

    # b's session is gone: the broker routes everything to a
    later = reports(100, prefix="z")
    school.add(later)
    wait_for(
        lambda: len(stored_devices(a.db_url, since)) == len(first) + len(later),
        what="the next 100 reports stored by a alone",
    )


def test_retiring_the_last_collector_is_refused(
    deploy_broker: ShippedBroker, postgres_url: str, tmp_path: Path
) -> None:
    solo = CollectorProcess(tmp_path / "s", deploy_broker, postgres_url, name="solo")
    other = CollectorProcess(tmp_path / "o", deploy_broker, postgres_url, name="other")
    try:
        solo.start().stop()
        code, out = commands(other, "retire", "solo")
        assert code == 1 and "no other collector" in out
    finally:
        cleanup(solo, other)


def test_the_session_of_the_old_fixed_client_id_is_retired_after_an_upgrade(
    deploy_broker: ShippedBroker, school: ServiceAgent, tmp_path: Path
) -> None:
    """Before this version every collector was `edugap-collector` on `$share/edugap/...`: after
    an upgrade that session is left behind, queueing a copy of every report."""
    old = new_client(deploy_broker.settings("edugap-collector"), "edugap-collector", False)
    settings = deploy_broker.settings("edugap-collector")
    subscribed = threading.Event()
    old.on_subscribe = lambda *_: subscribed.set()
    old.connect(settings.host, settings.port, **connect_properties(settings, False))  # type: ignore[arg-type]
    old.loop_start()
    old.subscribe("$share/edugap/edugap/v1/+/+/+", qos=1)
    assert subscribed.wait(20)
    old.disconnect()
    old.loop_stop()

    since = utcnow() - timedelta(minutes=1)
    new = CollectorProcess(tmp_path / "c", deploy_broker, str(tmp_path / "edugap.db"))
    try:
        new.start()
        sent = reports(50)
        school.add(sent)
        wait_for(lambda: len(stored_devices(new.db_url, since)) == 50, what="50 stored")
        code, out = commands(
            new, "retire", "edugap-collector", "--client-id", "edugap-collector", "--force"
        )
        assert code == 0 and "retired" in out, out
        # it held a copy of each (and of what the agent sent before the new collector ran)
        held = int(out.split("session held ")[1].split(" ")[0])
        assert held >= len(sent)
        counts = stored_devices(new.db_url, since)
        assert all(counts[r.device_id] == 1 for r in sent), "a copy was stored twice"
        again = Impostor(deploy_broker, "edugap-collector", clean=False)
        try:
            assert again.session_present is False, "the old session is still there"
        finally:
            again.close()
    finally:
        new.stop()
