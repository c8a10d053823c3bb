"""FastClient against a real Mosquitto: it must deliver exactly what plain paho delivers."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from edugap.collector.ingest import mqtt_fast
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.ingest.mqtt_fast import READ_CHUNK, FastClient, fast_client, fast_supported
from edugap.collector.model import IngestStats
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.store import open_store
from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client, parse_broker_url
from tests import realparts
from tests.collector.http_helpers import wait_ready
from tests.collector.mqtt_helpers import publish, publisher, wait_until
from tests.collector.reports import T0, heartbeat
from tests.realparts import Mosquitto
from tests.shipped_broker import make_certificates

TOPIC = "fast/test"

# (topic, payload, qos, user property or None)
Sent = tuple[str, bytes, int, str | None]


def test_installed_paho_still_has_the_internals_fast_client_overrides() -> None:
    # if this fails, a paho upgrade changed _sock_recv/_handle_publish/...: ingest falls back
    # to the plain (about 3x slower) client, with a warning, until
    # edugap/collector/ingest/mqtt_fast.py is updated
    assert mqtt_fast.missing_internals() == []
    assert fast_supported() and mqtt_fast.fallback_warning() is None
    client = fast_client(BrokerSettings(), "probe", clean_start=False, manual_ack=True)
    assert isinstance(client, FastClient)


def reshape_paho(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a paho release might: a private method FastClient overrides gains a parameter.
    paho itself still works; FastClient's override would not fit it."""
    original = mqtt.Client._sock_recv

    def _sock_recv(self: mqtt.Client, bufsize: int, flags: int = 0) -> bytes:
        return original(self, bufsize)

    monkeypatch.setattr(mqtt.Client, "_sock_recv", _sock_recv)


def test_a_reshaped_paho_is_named_and_ingest_gets_plain_paho_that_still_receives(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    reshape_paho(monkeypatch)
    assert mqtt_fast.missing_internals() == ["Client._sock_recv(bufsize)"]
    settings = parse_broker_url(broker.url)
    sub = Collector(settings, fast_client)
    assert type(sub.client) is mqtt.Client
    sent = [(f"{TOPIC}/p", b"plain%d" % i, 1, None) for i in range(200)]
    with sub.running():
        wait_until(sub.subscribed.is_set, what="subscribed")
        send(settings, sent)
        wait_until(lambda: len(sub.got) >= len(sent), what="200 messages")
    assert sub.got == sent


def reader_samples(stats: IngestStats | str) -> dict[str, tuple[str, float]]:
    """reader -> (paho_version, value) of edugap_collector_ingest_reader_info in a /metrics
    body, or in what /metrics would say for these ingest stats."""
    if isinstance(stats, str):
        body = stats
    else:
        body = b"".join(Exposition(SnapshotHolder(), stats).text(collector=True)).decode()
    return {
        s.labels["reader"]: (s.labels["paho_version"], s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "edugap_collector_ingest_reader_info"
    }


@pytest.mark.parametrize("reshaped", [False, True], ids=["fast", "paho_fallback"])
def test_the_collector_says_which_reader_runs_at_start_and_in_metrics(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reshaped: bool,
) -> None:
    if reshaped:
        reshape_paho(monkeypatch)
    caplog.set_level(logging.WARNING)
    store = open_store(str(tmp_path / "edugap.db"))
    stats = IngestStats()
    ingest = Ingest(store, parse_broker_url(broker.url), batch_seconds=0.05, stats=stats)
    sent = [heartbeat(device=f"d{i % 20}", at=T0 + timedelta(seconds=i)) for i in range(500)]
    try:
        ingest.start()
        wait_until(ingest.ready, what="ingest subscribed")
        with publisher(broker.url) as pub:
            publish(pub, sent)
        wait_until(lambda: stats.messages["stored"] >= len(sent), what="500 stored")
        assert ingest.wait_idle(10)
    finally:
        ingest.stop()
        stored = store.report_count()
        store.close()
    assert stored == len(sent) and stats.messages["duplicate"] == 0  # either reader: 0 lost
    paho = version("paho-mqtt")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    said = [w for w in warnings if "fast MQTT reader" in w]
    if reshaped:
        assert ingest.reader == "paho" and type(ingest.client) is mqtt.Client
        # one warning, at start, naming the paho version and what it lacks
        assert len(said) == 1, warnings
        assert f"paho-mqtt {paho} " in said[0] and "Client._sock_recv(bufsize)" in said[0]
        assert reader_samples(stats) == {"paho": (paho, 1.0)}
    else:
        assert ingest.reader == "fast" and isinstance(ingest.client, FastClient)
        assert said == []
        assert reader_samples(stats) == {"fast": (paho, 1.0)}


# `edugap serve` on a paho whose _sock_recv gained a parameter, as reshape_paho does
RESHAPED_SERVE = """
import sys
import paho.mqtt.client as mqtt
original = mqtt.Client._sock_recv
def _sock_recv(self, bufsize, flags=0):
    return original(self, bufsize)
mqtt.Client._sock_recv = _sock_recv
from edugap.collector.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_edugap_serve_on_a_reshaped_paho_warns_at_start_and_in_metrics(
    broker: Mosquitto, tmp_path: Path
) -> None:
    port = realparts.free_port()
    base = f"http://127.0.0.1:{port}"
    argv = ["serve", "--broker", broker.url, "--db", str(tmp_path / "edugap.db"),
            "--listen", f"127.0.0.1:{port}", "--client-id", "reshaped"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", RESHAPED_SERVE, *argv],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_ready(base, proc)
        body = httpx.get(f"{base}/metrics", params={"collector": "1"}).text
        with publisher(broker.url) as pub:
            publish(pub, [heartbeat(at=T0 + timedelta(minutes=i)) for i in range(50)])
        wait_until(lambda: 'result="stored"} 50.0' in httpx.get(f"{base}/metrics").text,
                   what="50 reports stored by paho's reader")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
    paho = version("paho-mqtt")
    assert reader_samples(body) == {"paho": (paho, 1.0)}
    (warning,) = [line for line in log.splitlines() if "fast MQTT reader" in line]
    assert " WARNING " in warning and f"paho-mqtt {paho} " in warning, log
    assert "Client._sock_recv(bufsize)" in warning


def test_metrics_show_no_reader_where_no_ingest_runs() -> None:
    assert reader_samples(IngestStats()) == {}


def messages() -> list[Sent]:
    """Many small QoS 1 messages, with odd ones between: sizes around the read chunk, QoS 2,
    MQTT 5 properties, an empty payload, a non-ASCII topic. (Mosquitto does not queue QoS 0
    for an offline session: the restart test sends one while online.)"""
    out: list[Sent] = [(f"{TOPIC}/{i % 7}", b"x%d" % i * (i % 50), 1, None) for i in range(3000)]
    out.insert(10, (TOPIC, b"", 1, None))
    out.insert(500, (TOPIC, b"L" * (READ_CHUNK * 3 + 17), 1, None))
    out.insert(1200, (TOPIC, b"q2", 2, None))
    out.insert(1500, (TOPIC, b"with-props", 1, "school=VN-1"))
    out.insert(1800, (f"{TOPIC}/trường", b"utf8", 1, None))
    out.insert(2500, (TOPIC, b"M" * (READ_CHUNK - 40), 1, None))
    return out


class Collector:
    """A persistent-session subscriber that records every message it gets."""

    def __init__(self, settings: BrokerSettings, factory: object) -> None:
        self.settings = settings
        self.got: list[Sent] = []
        self.subscribed = threading.Event()
        self.client: mqtt.Client = factory(settings, "fast-sub", clean_start=False)  # type: ignore[operator]
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/#", qos=2) and None
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        user = None
        if m.properties is not None and hasattr(m.properties, "UserProperty"):
            user = "=".join(m.properties.UserProperty[0])
        self.got.append((m.topic, bytes(m.payload), m.qos, user))

    @contextmanager
    def running(self) -> Iterator[None]:
        kwargs = connect_properties(self.settings, clean_start=False)
        if "properties" in kwargs:
            kwargs["properties"].ReceiveMaximum = 2000  # type: ignore[attr-defined]
        self.client.connect(self.settings.host, self.settings.port, **kwargs)  # type: ignore[arg-type]
        self.client.loop_start()
        try:
            yield
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def send(settings: BrokerSettings, sent: Sequence[Sent]) -> None:
    pub = new_client(settings, "fast-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect(settings.host, settings.port, **connect_properties(settings, True))  # type: ignore[arg-type]
    pub.loop_start()
    try:
        infos = []
        for topic, payload, qos, user in sent:
            props = None
            if user is not None and settings.mqtt_version == 5:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = tuple(user.split("="))
            infos.append(pub.publish(topic, payload, qos=qos, properties=props))
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("version", [5, 3])
def test_a_backlog_arrives_complete_in_order_and_unchanged(broker: Mosquitto, version: int) -> None:
    settings = dataclasses.replace(parse_broker_url(broker.url), mqtt_version=version)
    sent = messages()
    if version == 3:  # no properties in MQTT 3.1.1
        sent = [(t, p, q, None) for t, p, q, _u in sent]
    sub = Collector(settings, fast_client)
    with sub.running():
        wait_until(sub.subscribed.is_set, what="subscribed")
    send(settings, sent)  # queued by the broker while the subscriber is away: arrives in bursts
    with sub.running():
        wait_until(lambda: len(sub.got) >= len(sent), what=f"{len(sent)} messages")
    # paho hands a QoS 2 message over at PUBREL, after later QoS 1 ones: order holds per QoS
    assert [m for m in sub.got if m[2] == 1] == [m for m in sent if m[2] == 1]
    assert sorted(sub.got) == sorted(sent)


def test_messages_keep_flowing_across_a_broker_restart(broker: Mosquitto) -> None:
    settings = parse_broker_url(broker.url)
    sub = Collector(settings, fast_client)
    sub.client.reconnect_delay_set(min_delay=1, max_delay=1)
    first = [(f"{TOPIC}/a", b"before%d" % i, 1, None) for i in range(500)]
    second = [(f"{TOPIC}/b", b"after%d" % i, 1, None) for i in range(500)]
    second.insert(100, (f"{TOPIC}/b", b"q0", 0, None))
    with sub.running():
        wait_until(sub.subscribed.is_set, what="subscribed")
        send(settings, first)
        wait_until(lambda: len(sub.got) >= len(first), what="first 500")
        broker.restart()
        sub.subscribed.clear()
        wait_until(sub.subscribed.is_set, what="subscribed again after the restart")
        send(settings, second)
        wait_until(lambda: set(sub.got) >= set(second), what="the second batch")
    # no stale buffered bytes leak into the new connection: every message is whole, and the
    # second batch arrives in order (messages whose PUBACK the restart cut off come again)
    assert set(sub.got) == set(first + second)
    assert [m for m in sub.got if m in second and m[2] == 1] == [m for m in second if m[2] == 1]


@pytest.mark.parametrize("filtered", [False, True])
def test_filtered_callbacks_and_a_failing_callback_behave_as_in_paho(
    broker: Mosquitto, filtered: bool
) -> None:
    settings = parse_broker_url(broker.url)
    sub = Collector(settings, fast_client)
    alarms: list[bytes] = []
    if filtered:  # FastClient then leaves topic matching and the callback to paho
        sub.client.message_callback_add(f"{TOPIC}/alarm", lambda *a: alarms.append(a[2].payload))
    sub.client.suppress_exceptions = True  # paho logs a failing callback and goes on
    record = sub._on_message

    def fussy(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        if m.payload == b"boom":
            raise ValueError("callback bug")
        record(c, u, m)

    sub.client.on_message = fussy
    sent = [(f"{TOPIC}/n", b"m%d" % i, 1, None) for i in range(300)]
    with sub.running():
        wait_until(sub.subscribed.is_set, what="subscribed")
        send(settings, [*sent[:100], (f"{TOPIC}/n", b"boom", 1, None), *sent[100:]])
        send(settings, [(f"{TOPIC}/alarm", b"fire", 1, None)])
        wait_until(lambda: len(sub.got) + len(alarms) >= len(sent) + 1, what="all messages")
    if filtered:
        assert sub.got == sent and alarms == [b"fire"]
    else:
        assert sub.got == [*sent, (f"{TOPIC}/alarm", b"fire", 1, None)]


def test_a_backlog_arrives_whole_over_tls(tmp_path: Path) -> None:
    # TLS records and 64 KiB reads do not line up; paho's loop also asks the SSL socket
    # for bytes it has decrypted but not yet returned
    ca, cert, key = make_certificates(tmp_path / "certs")
    tls_port = realparts.free_port()
    extra = f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
    with realparts.mosquitto(tmp_path / "broker", extra):
        realparts.wait_port(tls_port)
        settings = BrokerSettings(port=tls_port, tls=True, ca_file=str(ca))
        sent = [m for m in messages() if m[2] == 1]
        sub = Collector(settings, fast_client)
        assert isinstance(sub.client, FastClient)
        with sub.running():
            wait_until(sub.subscribed.is_set, what="subscribed over TLS")
        send(settings, sent)
        with sub.running():
            wait_until(lambda: len(sub.got) >= len(sent), what=f"{len(sent)} messages")
    assert sub.got == sent
