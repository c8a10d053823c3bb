"""No message stops ingest: poison reports, overflow bursts and broken clocks against Mosquitto
running the shipped config (TLS, per-school ACL, persistence) and both stores. Every school's
reports are sent with that school's own credentials; every test counts sent against stored and
rejected.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest
from starlette.testclient import TestClient

from edugap.collector.app import CollectorApp
from edugap.collector.config import load_config
from edugap.collector.export import write_shortages
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.model import Store
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import load_policy
from edugap.collector.store import open_store, scheme_of, sqlite_path
from edugap.protocol.messages import MAX_COUNT, encode, to_builtins, topic_for, utcnow
from tests.collector.mqtt_helpers import SchoolPublishers, wait_until
from tests.collector.reports import bandwidth, heartbeat, status
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker, shipped_broker

HOUR = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SCHOOLS = (*(f"S{i}" for i in range(40)), "BUSY", "POISON", "CMOS", "SCH-1")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    """The shipped Mosquitto config, with a credential for each school these tests send as."""
    with shipped_broker(tmp_path / "shipped", schools=SCHOOLS) as b:
        yield b


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


def handled(ingest: Ingest) -> int:
    return sum(ingest.stats.messages.values())


def rejected(ingest: Ingest) -> dict[str, int]:
    return {k: v for k, v in ingest.stats.messages.items() if k.startswith("rejected_") and v}


def refuse_school(db_url: str, school: str) -> None:
    """Make the real store refuse speed tests of `school`, the way it refuses a value it cannot
    hold: a stand-in for whatever slips past the protocol's bounds (the bounds stop year 0 and
    the overflow at the door now, so they cannot serve as store-side poison here)."""
    if scheme_of(db_url) == "sqlite":
        with sqlite3.connect(sqlite_path(db_url)) as conn:
            conn.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON bandwidth"
                f" WHEN NEW.school_id = '{school}' BEGIN SELECT RAISE(ABORT, 'poison'); END"
            )
    else:
        with psycopg.connect(db_url, autocommit=True) as pg:
            pg.execute(
                "ALTER TABLE bandwidth ADD CONSTRAINT refuse_poison"
                f" CHECK (school_id <> '{school}')"
            )


def test_poison_and_overflow_are_rejected_and_everything_else_is_stored(
    db_url: str, store: Store, broker: ShippedBroker
) -> None:
    refuse_school(db_url, "POISON")
    good = [
        bandwidth(school=f"S{i % 40}", device=f"d{i % 7}", at=HOUR + timedelta(seconds=i))
        for i in range(400)
    ]
    # the most checks a heartbeat may carry, 1,024 times in one school and hour: summed exactly
    full = [
        msgspec.structs.replace(heartbeat(school="BUSY", at=HOUR), checks=MAX_COUNT,
                                checks_ok=MAX_COUNT)
        for _ in range(1024)
    ]  # fmt: skip
    # refused by the store: each batch that holds one is split until it is alone
    poison = [bandwidth(school="POISON", device=f"p{i}", at=HOUR) for i in range(5)]
    year_0 = encode(bandwidth(school="S1", at=HOUR)).replace(
        b"2026-11-20T08:00:00Z", b"0001-01-01T00:00:00+01:00"
    )
    over = to_builtins(heartbeat(school="BUSY", at=HOUR))
    over.update(checks=2**53, checks_ok=2**53)  # overflowed the hour's sum before
    collector = broker.settings(COLLECTOR_USER)
    ingest = Ingest(store, collector, batch_seconds=0.2, batch_max=500)
    ingest.start()
    sent = 0
    try:
        wait_until(ingest.ready, what="ingest subscribed")
        with SchoolPublishers(broker.settings) as pub:
            for i in range(8):  # the bad ones spread among the good, across batches
                pub.publish(good[i * 50 : (i + 1) * 50] + full[i * 128 : (i + 1) * 128])
                pub.publish(poison[i : i + 1])
                pub.publish_raw("S1", topic_for("S1", "dev-1", "bandwidth"), year_0)
                for n in range(128):
                    over["report_id"] = f"overflow-{i}-{n}"
                    pub.publish_raw("BUSY", topic_for("BUSY", "dev-1", "heartbeat"),
                                    msgspec.json.encode(over))  # fmt: skip
                sent += 50 + 128 + len(poison[i : i + 1]) + 1 + 128
        wait_until(lambda: handled(ingest) == sent, timeout=60, what="every message handled")
        assert ingest.wait_idle(10)
    finally:
        ingest.stop()
    stored = len(good) + len(full)
    assert ingest.stats.messages["stored"] == stored
    assert ingest.stats.messages["duplicate"] == 0
    assert rejected(ingest) == {
        "rejected_unstorable": len(poison),
        "rejected_invalid": 8 + 1024,
    }
    assert store.report_count() == stored  # type: ignore[attr-defined]
    kept = store.recent_rejects(limit=5000)
    unstorable = [r for r in kept if r.reason == "unstorable"]
    assert sorted(r.topic for r in unstorable) == sorted(
        topic_for("POISON", f"p{i}", "bandwidth") for i in range(5)
    )
    assert all("POISON" in r.payload_excerpt for r in unstorable)
    (hour,) = [h for h in store.heartbeat_hours_since(HOUR) if h.school_id == "BUSY"]
    assert (hour.heartbeats, hour.checks) == (1024, 1024 * MAX_COUNT)
    # snapshots and exports still work
    snap = evaluate(store, load_policy(), HOUR + timedelta(hours=1))
    assert snap.schools["S1"].tests_7d == 10 and "POISON" not in snap.schools
    out = io.BytesIO()
    assert write_shortages(snap, "csv", out) == len(snap.schools)
    # and a restart: the rejected were acknowledged, so nothing comes again
    again = Ingest(store, collector, batch_seconds=0.05)
    again.start()
    try:
        wait_until(again.ready, what="ingest subscribed again")
        with SchoolPublishers(broker.settings) as pub:
            pub.publish([bandwidth(school="S1", device="after-restart", at=HOUR)])
        wait_until(lambda: handled(again) == 1, what="the report after the restart")
        assert again.wait_idle(10)
    finally:
        again.stop()
    assert again.stats.messages == {"stored": 1, "duplicate": 0}


def test_an_agent_26_years_behind_keeps_its_school_live_and_is_flagged(
    store: Store, broker: ShippedBroker
) -> None:
    now = utcnow()
    cmos = now - timedelta(days=26 * 365)  # a dead CMOS battery
    reports = [
        status(school="CMOS", device="pc-1", at=cmos),
        *(heartbeat(school="CMOS", device="pc-1", at=cmos + timedelta(minutes=5 * i))
          for i in range(6)),
        bandwidth(school="CMOS", device="pc-1", at=cmos + timedelta(minutes=7)),
        heartbeat(school="CMOS", device="pc-2", at=now),  # a computer with a good clock
    ]  # fmt: skip
    ingest = Ingest(store, broker.settings(COLLECTOR_USER), batch_seconds=0.05)
    ingest.start()
    try:
        wait_until(ingest.ready, what="ingest subscribed")
        with SchoolPublishers(broker.settings) as pub:
            pub.publish(reports)
        wait_until(lambda: handled(ingest) == len(reports), what="every report handled")
    finally:
        ingest.stop()
    assert ingest.stats.messages["stored"] == len(reports)
    assert ingest.stats.clamped == {"behind": len(reports) - 1}
    school = evaluate(store, load_policy(), utcnow()).schools["CMOS"]
    assert school.monitoring == "live" and "not_monitored" not in school.shortfalls
    assert (school.devices_reporting, school.devices_clock_off) == (2, 1)
    assert school.tests_7d == 1  # its speed test counts, at the time it arrived


def test_readyz_says_the_writer_is_not_ready_while_batches_keep_failing(
    tmp_path: Path, broker: ShippedBroker
) -> None:
    db = str(tmp_path / "edugap.db")
    config = load_config(
        environ={"EDUGAP_INGEST_UNREADY_AFTER_SECONDS": "0.5"},
        cli={"broker_url": broker.url(COLLECTOR_USER), "db_url": db, "http_listen": "127.0.0.1:0",
             "ingest_client_id": "readyz-collector"},
    )  # fmt: skip
    app = CollectorApp(config)
    http = TestClient(app.start())
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        wait_until(lambda: http.get("/readyz").status_code == 200, what="ready")
        assert http.get("/readyz").json()["checks"]["writer"] is True
        blocker.execute("BEGIN EXCLUSIVE")  # the store cannot write (like a full disk)
        with SchoolPublishers(broker.settings) as pub:
            pub.publish([bandwidth(device=f"d{i}") for i in range(10)])
        wait_until(lambda: http.get("/readyz").status_code == 503, timeout=60,
                   what="not ready while the batch keeps failing")  # fmt: skip
        checks = http.get("/readyz").json()["checks"]
        assert checks["writer"] is False and checks["ingest"] is True
        blocker.execute("ROLLBACK")
        wait_until(lambda: http.get("/readyz").status_code == 200, timeout=60,
                   what="ready again once the batch is saved")  # fmt: skip
        assert app.stats.messages["stored"] == 10
    finally:
        blocker.close()
        app.stop()
