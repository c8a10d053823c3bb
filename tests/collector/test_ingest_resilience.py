"""Ingest when things go wrong: a killed collector, two collectors, a locked store, a restart.

The invariant in every test: each published report is stored exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from edugap.collector.ingest.consumer import Ingest
from edugap.collector.store import open_store
from edugap.protocol.mqtt import parse_broker_url
from tests.collector.mqtt_helpers import publish, publisher, wait_until
from tests.collector.reports import T0, bandwidth
from tests.realparts import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def collector_process(store_url: str, broker: Mosquitto, client_id: str) -> Iterator[int]:
    """The ingest in its own process (tests.collector.run_ingest); yields its pid once ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.collector.run_ingest", store_url, broker.url, client_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"collector process said {line!r}"
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_collector_stopped_then_killed_mid_stream_stores_every_report_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    db = str(tmp_path / "edugap.db")
    store = open_store(db)  # this test's own reader of the collector's file
    reports = [bandwidth(device=f"d{i % 37}", at=T0 + timedelta(seconds=i)) for i in range(3000)]
    # stop, then kill, on the publisher's clock (at 1/3 and 2/3), not just after a commit
    # was seen, so the collector is as likely to hold an unsaved batch as to wait for one
    marks = [threading.Event(), threading.Event()]
    published = threading.Event()

    def publish_slowly() -> None:
        with publisher(broker.url) as pub:
            for start in range(0, len(reports), 100):
                publish(pub, reports[start : start + 100])
                for n, mark in enumerate(marks, 1):
                    if start >= n * len(reports) // 3:
                        mark.set()
                time.sleep(0.08)
        published.set()

    sender = threading.Thread(target=publish_slowly)
    try:
        for n, mark in enumerate(marks):
            with collector_process(db, broker, "collector-k") as pid:
                if n == 0:
                    sender.start()
                wait_until(mark.is_set, what="the publisher's mark")
                if n == 0:
                    os.kill(pid, signal.SIGTERM)  # clean stop: stores what it holds, then leaves
                else:
                    os.kill(pid, signal.SIGKILL)  # no flush, no disconnect, no acks
            assert not published.is_set(), "the kill must happen while reports still flow"
        sender.join()
        assert store.report_count() < len(reports)  # type: ignore[attr-defined]
        with collector_process(db, broker, "collector-k"):
            wait_until(
                lambda: store.report_count() == len(reports),  # type: ignore[attr-defined]
                timeout=60,
                what="every report stored after the restart",
            )
        rows = store.bandwidth_since(T0)
        assert len(rows) == len(reports)  # no report stored twice
        assert {r.measured_at for r in rows} == {r.measured_at for r in reports}
    finally:
        if sender.is_alive():
            sender.join()
        store.close()


def test_two_collectors_in_one_group_share_the_stream_and_store_each_report_once(
    postgres_url: str, broker: Mosquitto
) -> None:
    stores = [open_store(postgres_url), open_store(postgres_url)]
    settings = parse_broker_url(broker.url)
    ingests = [
        Ingest(
            s, settings, client_id=f"collector-{n}", shared=True, batch_seconds=0.05, batch_max=100
        )
        for n, s in enumerate(stores)
    ]
    reports = [bandwidth(device=f"d{i % 50}", at=T0 + timedelta(seconds=i)) for i in range(2000)]
    try:
        for ingest in ingests:
            ingest.start()
        for ingest in ingests:
            wait_until(ingest.ready, what="both collectors subscribed")
        with publisher(broker.url) as pub:
            publish(pub, reports)
            publish(pub, reports[:300])  # resent: either collector may get the second copy
        wait_until(
            lambda: (
                sum(i.stats.messages["stored"] + i.stats.messages["duplicate"] for i in ingests)
                == 2300
            ),
            timeout=60,
            what="all 2300 messages handled",
        )
    finally:
        for ingest in ingests:
            ingest.stop()
    stored = [i.stats.messages["stored"] for i in ingests]
    assert all(n > 0 for n in stored), f"one collector did no work: {stored}"
    assert sum(stored) == 2000
    assert sum(i.stats.messages["duplicate"] for i in ingests) == 300
    assert len(stores[0].bandwidth_since(T0)) == 2000
    for s in stores:
        s.close()


def test_a_locked_store_is_retried_and_nothing_is_lost(tmp_path: Path, broker: Mosquitto) -> None:
    db = str(tmp_path / "edugap.db")
    store = open_store(db, busy_timeout_ms=50)
    ingest = Ingest(store, parse_broker_url(broker.url), batch_seconds=0.05, retry_max_seconds=0.2)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        ingest.start()
        wait_until(ingest.ready, what="ingest subscribed")
        blocker.execute("BEGIN EXCLUSIVE")  # e.g. an operator's long write
        with publisher(broker.url) as pub:
            publish(pub, [bandwidth(device=f"d{i}") for i in range(20)])
        wait_until(lambda: ingest.stats.store_errors >= 3, what="failed writes counted")
        assert ingest.stats.messages["stored"] == 0
        blocker.execute("ROLLBACK")
        wait_until(lambda: ingest.stats.messages["stored"] == 20, what="stored after the lock")
    finally:
        blocker.close()
        ingest.stop()
    assert len(store.bandwidth_since(T0)) == 20
    store.close()


def test_ingest_reconnects_after_a_broker_restart(tmp_path: Path, broker: Mosquitto) -> None:
    store = open_store(str(tmp_path / "edugap.db"))
    ingest = Ingest(store, parse_broker_url(broker.url), batch_seconds=0.05)
    try:
        ingest.start()
        wait_until(ingest.ready, what="ingest subscribed")
        with publisher(broker.url) as pub:
            publish(pub, [bandwidth(device="before")])
        wait_until(lambda: ingest.stats.messages["stored"] == 1, what="first report")
        broker.restart()
        wait_until(ingest.ready, timeout=30, what="ingest back after the restart")
        with publisher(broker.url) as pub:
            publish(pub, [bandwidth(device="after")])
        wait_until(lambda: ingest.stats.messages["stored"] == 2, what="report after restart")
    finally:
        ingest.stop()
    assert sorted(r.device_id for r in store.bandwidth_since(T0)) == ["after", "before"]
    store.close()
