"""The fleet simulator: repeatable, protocol-valid, a realistic mix, delivered through a broker."""

from __future__ import annotations

import csv
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edugap.collector.cli import main
from edugap.collector.demo.bulk_publish import Publisher
from edugap.collector.demo.fleet import REGISTRY_COLUMNS, build_fleet, required_mbps
from edugap.collector.demo.simulate import Plan, fleet_reports
from edugap.protocol.messages import Bandwidth, Inventory, decode
from edugap.protocol.mqtt import connect_properties, new_client, parse_broker_url
from tests.realparts import Mosquitto

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _simulate(tmp_path: Path, name: str, seed: int, *extra: str) -> tuple[int, str]:
    registry = tmp_path / f"{name}.csv"
    code = main(
        [
            "simulate",
            "--schools",
            "300",
            "--seed",
            str(seed),
            "--now",
            NOW.isoformat(),
            "--registry-out",
            str(registry),
            "--no-publish",
            *extra,
        ]
    )
    return code, registry.read_text(encoding="utf-8")


def test_same_seed_gives_same_registry_and_reports(tmp_path: Path) -> None:
    code1, first = _simulate(tmp_path, "a", seed=7)
    code2, again = _simulate(tmp_path, "b", seed=7)
    _, other = _simulate(tmp_path, "c", seed=8)
    assert code1 == code2 == 0
    assert first == again
    assert first != other
    rows = list(csv.DictReader(first.splitlines()))
    assert len(rows) == 300
    assert tuple(rows[0]) == REGISTRY_COLUMNS

    plan = Plan(now=NOW)
    reports = list(fleet_reports(build_fleet(300, 2, seed=7), plan, seed=7))
    assert reports == list(fleet_reports(build_fleet(300, 2, seed=7), plan, seed=7))
    assert reports != list(fleet_reports(build_fleet(300, 2, seed=8), plan, seed=8))


def test_every_payload_is_valid_protocol_v1() -> None:
    plan = Plan(now=NOW, days=7)
    fleet = build_fleet(200, 3, seed=3)
    ids = {s.school.school_id: set(s.device_ids) for s in fleet}
    seen_ids: set[str] = set()
    kinds: set[str] = set()
    for topic, payload in fleet_reports(fleet, plan, seed=3):
        report = decode(topic, payload)  # raises ProtocolError on any violation
        assert report.device_id in ids[report.school_id]
        assert report.measured_at <= NOW
        assert report.report_id not in seen_ids
        seen_ids.add(report.report_id)
        kinds.add(report.kind)
    assert kinds == {"inventory", "bandwidth", "heartbeat"}


def test_fleet_has_good_moderate_bad_silent_dropped_and_underequipped_schools() -> None:
    """Judged from the registry and the reports alone, as the collector would see them."""
    fleet = build_fleet(600, 2, seed=11)
    schools = {s.school.school_id: s.school for s in fleet}
    downloads: dict[str, list[float]] = defaultdict(list)
    newest: dict[str, datetime] = {}
    memory: dict[str, list[int]] = defaultdict(list)
    os_names: set[str] = set()
    for topic, payload in fleet_reports(fleet, Plan(now=NOW), seed=11):
        r = decode(topic, payload)
        newest[r.school_id] = max(newest.get(r.school_id, r.measured_at), r.measured_at)
        if isinstance(r, Bandwidth) and r.succeeded and r.download_mbps is not None:
            downloads[r.school_id].append(r.download_mbps)
        if isinstance(r, Inventory):
            memory[r.school_id].append(r.memory_mb)
            os_names.add(r.os.name)

    classes: dict[str, int] = defaultdict(int)
    for school_id, values in downloads.items():
        median = statistics.median(values)
        need = required_mbps(schools[school_id].students)
        classes["good" if median >= need else "moderate" if median >= 1 else "bad"] += 1
    assert all(classes[c] >= 30 for c in ("good", "moderate", "bad")), classes

    never = set(schools) - set(newest)
    dropped = {s for s, t in newest.items() if NOW - t > timedelta(days=22)}
    assert len(never) >= 15 and len(dropped) >= 15
    assert all(timedelta(days=22) <= NOW - newest[s] <= timedelta(days=41) for s in dropped)

    assert any(max(m) < 4096 for m in memory.values()), "no school with only low-RAM computers"
    assert "Windows 7 Professional" in os_names
    short = [s for s in schools.values() if s.computers_required and s.computers_required > 2]
    assert len(short) >= 15, "no school registered as needing more computers than it has"
    assert {s.level for s in schools.values()} >= {"primary", "lower_secondary", "upper_secondary"}
    assert len({s.province for s in schools.values()}) >= 30


def test_schools_are_placed_in_official_provinces_and_communes_inside_vietnam() -> None:
    from vietnam_provinces import Province, Ward

    provinces = {p.name for p in Province.iter_all()}
    communes = {w.name for w in Ward.iter_all()}
    for sim in build_fleet(500, 1, seed=5):
        s = sim.school
        assert s.province in provinces
        assert s.commune in communes
        assert 8.4 <= s.lat <= 23.4 and 102.1 <= s.lon <= 109.5
        assert s.students > 0


class _Listener:
    """A real MQTT subscriber on the edugap topics that counts what arrives.

    With `persistent` its session (and the messages queued for it) survives a broker restart.
    """

    def __init__(self, url: str, persistent: bool = False) -> None:
        settings = parse_broker_url(url)
        self.topics: list[str] = []
        self.report_ids: set[str] = set()
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = new_client(settings, "test-listener", clean_start=not persistent)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("edugap/v1/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = self._on_message
        kwargs = connect_properties(settings, clean_start=not persistent)
        self.client.connect_async(settings.host, settings.port, **kwargs)  # type: ignore[arg-type]
        self.client.loop_start()
        assert subscribed.wait(10), "listener could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        report = decode(msg.topic, msg.payload)
        with self.lock:
            self.topics.append(msg.topic)
            self.report_ids.add(report.report_id)

    def wait_for_ids(self, ids: set[str], timeout: float = 60.0) -> set[str]:
        """Wait until every id has arrived (at least once); return the missing ones."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ids <= self.report_ids:
            time.sleep(0.1)
        return ids - self.report_ids

    def wait_for(self, n: int, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.topics) < n:
            time.sleep(0.05)
        return len(self.topics)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_reports_arrive_through_a_real_broker(broker: Mosquitto, tmp_path: Path) -> None:
    listener = _Listener(broker.url)
    try:
        args = ["--schools", "80", "--devices-per-school", "2", "--seed", "4"]
        args += ["--now", NOW.isoformat(), "--registry-out", str(tmp_path / "r.csv")]
        assert main(["simulate", *args, "--broker", broker.url]) == 0
        expected = list(fleet_reports(build_fleet(80, 2, seed=4), Plan(now=NOW), seed=4))
        assert listener.wait_for(len(expected)) == len(expected)
        assert sorted(listener.topics) == sorted(t for t, _ in expected)
    finally:
        listener.close()
    registered = {row["school_id"] for row in csv.DictReader((tmp_path / "r.csv").open())}
    assert {t.split("/")[2] for t in listener.topics} <= registered


def test_publishing_survives_a_broker_restart(broker: Mosquitto) -> None:
    """Every report reaches a persistent subscriber although the broker restarts mid-run."""
    fleet = build_fleet(600, 2, seed=9)
    messages = list(fleet_reports(fleet, Plan(now=NOW), seed=9))
    expected = {decode(t, p).report_id for t, p in messages}
    listener = _Listener(broker.url, persistent=True)
    sent = 0

    def counted() -> Iterator[tuple[str, bytes]]:
        nonlocal sent
        for n, message in enumerate(messages):
            if n == len(messages) // 3:
                broker.restart()  # mid-run: paho reconnects and resends what was not acked
            sent += 1
            yield message

    try:
        with Publisher(parse_broker_url(broker.url)) as publisher:
            result = publisher.publish_all(counted())
        assert result.sent == sent == len(messages)
        assert result.acked == result.sent
        assert listener.wait_for_ids(expected) == set()
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "http://127.0.0.1:1"], "scheme must be mqtt://"),
        (["--devices-per-school", "0"], "--devices-per-school must be at least 1"),
    ],
)
def test_bad_options_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--schools", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.realparts import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"
    code = main(["simulate", "--schools", "2", "--broker", url, "--connect-timeout", "2"])
    assert code == 1
    assert f"cannot connect to broker {url}" in capsys.readouterr().err
