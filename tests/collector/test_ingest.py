"""Ingest against a real Mosquitto and a real store: what gets stored, rejected, counted."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from edugap.collector.ingest.consumer import Ingest
from edugap.collector.ingest.mqtt_fast import FastClient
from edugap.collector.model import Store
from edugap.collector.store import open_store
from edugap.protocol.messages import encode, to_builtins, topic_for
from edugap.protocol.mqtt import parse_broker_url
from tests.collector.mqtt_helpers import publish, publish_raw, publisher, wait_until
from tests.collector.reports import T0, bandwidth, heartbeat, inventory, status
from tests.realparts import Mosquitto


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "edugap.db"))
    yield s
    s.close()


def started(store: Store, broker: Mosquitto, **kw: object) -> Ingest:
    ingest = Ingest(store, parse_broker_url(broker.url), batch_seconds=0.05, **kw)  # type: ignore[arg-type]
    ingest.start()
    wait_until(ingest.ready, what="ingest connected and subscribed")
    return ingest


def test_valid_reports_are_stored_and_a_redelivery_counts_as_duplicate(
    store: Store, broker: Mosquitto
) -> None:
    ingest = started(store, broker)
    try:
        reports = [bandwidth(device=f"d{i}", at=T0 + timedelta(minutes=i)) for i in range(20)]
        extra = [heartbeat(checks=4, ok=3), inventory(memory_mb=3072), status()]
        with publisher(broker.url) as pub:
            publish(pub, reports + extra)
            wait_until(lambda: ingest.stats.messages["stored"] == 23, what="23 stored")
            publish(pub, [reports[3]])  # an agent resending a report it was not sure about
            wait_until(lambda: ingest.stats.messages["duplicate"] == 1, what="a duplicate")
        assert ingest.wait_idle(10)
    finally:
        ingest.stop()
    rows = store.bandwidth_since(T0)
    assert len(rows) == 20
    assert sorted(r.device_id for r in rows) == sorted(f"d{i}" for i in range(20))
    (device,) = [d for d in store.devices() if d.device_id == "dev-1"]
    assert device.memory_mb == 3072
    assert store.reporting_school_ids() == {"SCH-1"}
    assert ingest.stats.batches >= 1 and ingest.stats.last_batch_at is not None
    assert isinstance(ingest.client, FastClient)  # the buffered reader, not plain paho


def _with(report: object, **changes: object) -> bytes:
    raw = to_builtins(report)  # type: ignore[arg-type]
    raw.update(changes)
    return msgspec.json.encode(raw)


def test_bad_messages_are_rejected_with_their_reason_and_valid_ones_around_them_stored(
    store: Store, broker: Mosquitto
) -> None:
    good = bandwidth(device="ok1")
    topic = topic_for("SCH-1", "dev-1", "bandwidth")
    whole = encode(bandwidth())
    bad: list[tuple[str, bytes, str]] = [
        (topic, whole[: len(whole) // 2], "bad_json"),  # truncated
        (topic, _with(bandwidth(), download_mbps="fast"), "invalid"),  # wrong type
        (topic, _with(bandwidth(), download_mbps=-1), "invalid"),  # negative
        (topic, whole.replace(b"1000", b"NaN", 1), "bad_json"),  # NaN is not JSON
        (topic, b"{" + b" " * (70 * 1024) + b"}", "too_large"),
        (topic, b'{"schema": "edugap.bandwidth/1", "server": "\xff\xfe"}', "not_utf8"),
        (topic_for("SCH-1", "other", "bandwidth"), encode(bandwidth()), "topic_mismatch"),
        (topic_for("SCH-1", "dev-1", "heartbeat"), encode(bandwidth()), "topic_mismatch"),
        (topic, _with(bandwidth(), schema="edugap.bandwidth/9"), "unknown_schema"),
        (topic, b"[1, 2, 3]", "invalid"),
        (f"edugap/v1/SCH-1/dev-1/{'x' * 5}", encode(bandwidth()), "bad_topic"),
    ]
    ingest = started(store, broker)
    try:
        with publisher(broker.url) as pub:
            publish(pub, [good])
            for t, payload, _ in bad:
                publish_raw(pub, t, payload)
            publish(pub, [bandwidth(device="ok2")])
            expected_rejects = len(bad)
            wait_until(
                lambda: (
                    sum(v for k, v in ingest.stats.messages.items() if k.startswith("rej"))
                    == expected_rejects
                ),
                what="every bad message rejected",
            )
            wait_until(lambda: ingest.stats.messages["stored"] == 2, what="both good stored")
    finally:
        ingest.stop()
    assert sorted(r.device_id for r in store.bandwidth_since(T0)) == ["ok1", "ok2"]
    want: dict[str, int] = {}
    for _, _, reason in bad:
        want[f"rejected_{reason}"] = want.get(f"rejected_{reason}", 0) + 1
    got = {k: v for k, v in ingest.stats.messages.items() if k.startswith("rejected_")}
    assert got == want
    kept = store.recent_rejects(limit=100)
    assert sorted(r.reason for r in kept) == sorted(reason for _, _, reason in bad)
    too_large = next(r for r in kept if r.reason == "too_large")
    assert len(too_large.payload_excerpt) <= 512 and "bytes" in too_large.detail


def test_implausible_measured_at_is_clamped_to_receive_time_counted_and_flagged(
    store: Store, broker: Mosquitto
) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ingest = started(store, broker, clock=lambda: now, max_future_skew_s=600.0)
    try:
        with publisher(broker.url) as pub:
            publish(
                pub,
                [
                    bandwidth(device="future", at=now + timedelta(days=365)),
                    bandwidth(device="near", at=now + timedelta(minutes=5)),  # within skew
                    bandwidth(device="cmos", at=datetime(2000, 1, 1, tzinfo=UTC)),
                    bandwidth(device="late", at=now - timedelta(days=3)),  # from an outbox
                ],
            )
        wait_until(lambda: ingest.stats.messages["stored"] == 4, what="all stored")
    finally:
        ingest.stop()
    rows = {r.device_id: r.measured_at for r in store.bandwidth_since(now - timedelta(days=9))}
    assert rows == {
        "future": now,
        "near": now + timedelta(minutes=5),
        "cmos": now,
        "late": now - timedelta(days=3),
    }
    assert ingest.stats.clamped == {"ahead": 1, "behind": 1}
    # liveness is the receive time, whatever the agents' clocks say
    assert store.last_report_per_school()["SCH-1"] == now
    devices = {d.device_id: d for d in store.devices()}
    assert {d.device_id for d in devices.values() if d.clock_off} == {"future", "cmos"}
    assert all(d.last_seen == now for d in devices.values())


def test_a_collector_that_was_down_gets_what_was_published_meanwhile(
    store: Store, broker: Mosquitto
) -> None:
    first = started(store, broker, client_id="collector-a")
    first.stop()  # the broker keeps the session and queues for it
    reports = [bandwidth(device=f"d{i}") for i in range(50)]
    with publisher(broker.url) as pub:
        publish(pub, reports)
    second = started(store, broker, client_id="collector-a")
    try:
        wait_until(lambda: second.stats.messages["stored"] == 50, what="the backlog stored")
    finally:
        second.stop()
    assert len(store.bandwidth_since(T0)) == 50


def test_stored_messages_are_acknowledged_so_a_restart_gets_no_second_copy(
    store: Store, broker: Mosquitto
) -> None:
    first = started(store, broker, client_id="collector-ack")
    with publisher(broker.url) as pub:
        publish(pub, [bandwidth(device=f"d{i}") for i in range(300)])
        wait_until(lambda: first.stats.messages["stored"] == 300, what="300 stored")
        first.stop()
        second = started(store, broker, client_id="collector-ack")
        try:
            # the broker would resend unacknowledged messages before this newer one
            publish(pub, [bandwidth(device="marker")])
            wait_until(lambda: second.stats.messages["stored"] == 1, what="the marker stored")
            assert second.wait_idle(10)
        finally:
            second.stop()
    assert second.stats.messages["duplicate"] == 0
    assert len(store.bandwidth_since(T0)) == 301


def test_ingest_over_mqtt_311_stores_and_acknowledges(store: Store, broker: Mosquitto) -> None:
    settings = dataclasses.replace(parse_broker_url(broker.url), mqtt_version=3)
    ingest = Ingest(store, settings, client_id="collector-v3", batch_seconds=0.05)
    ingest.start()
    try:
        wait_until(ingest.ready, what="subscribed over MQTT 3.1.1")
        with publisher(broker.url) as pub:
            publish(pub, [bandwidth(device=f"d{i}") for i in range(30)])
        wait_until(lambda: ingest.stats.messages["stored"] == 30, what="30 stored")
    finally:
        ingest.stop()
    assert len(store.bandwidth_since(T0)) == 30
