"""Benchmark: draining a backlog of reports from a real Mosquitto into the store.

Each run publishes one backlog (default 100,000 reports: 70% heartbeats, 25% speed tests, 5%
inventories, from 2,000 schools) at QoS 1 into a private Mosquitto while seven persistent
sessions are subscribed but offline; then each session drains its copy in turn, timed:

  measured   edugap.collector.ingest.consumer.Ingest into SQLite (decode, batch, save, ack after
  commit) measured   edugap.collector.ingest.consumer.Ingest into PostgreSQL
  baseline   a bare paho-mqtt client (same library, MQTT 5, auto ack) that only counts messages
  reader     edugap.collector.ingest.mqtt_fast.FastClient (paho with buffered reads), counting only
  ceiling    `mosquitto_sub` (C) writing the messages to /dev/null
  (and Ingest and bare paho over MQTT 3.1.1)

Then latency: a collector in its own process (SQLite, production batch settings) while reports
are published at 1,000/s; a poller reads the store every 10 ms; publish-to-visible p50/p99.

Targets: >= 20,000 reports/s into SQLite, and >= half the bare paho client's rate; p99 < 1 s.

    .venv/bin/python bench/ingest.py            # 100,000 reports, 3 runs, 10 s of latency
    .venv/bin/python bench/ingest.py --quick    # 20,000 reports, 3 runs, 5 s of latency
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _ingest_national as ingest_national
import harness
import paho.mqtt.client as mqtt
from harness.parts import Mosquitto, mosquitto, postgres_admin_url
from harness.pgserver import PrivatePostgres
from harness.procs import python_child
from harness.runs import wait

from edugap.collector.ingest.consumer import Ingest
from edugap.collector.ingest.mqtt_fast import (
    fallback_warning,
    fast_client,
    paho_version,
    reader_of,
)
from edugap.collector.model import Received
from edugap.collector.store import open_store
from edugap.protocol.messages import decode, encode, new_report_id, topic_for
from edugap.protocol.mqtt import (
    BrokerSettings,
    ClientFactory,
    connect_properties,
    new_client,
    parse_broker_url,
)
from tests.collector.reports import bandwidth, heartbeat, inventory

TARGET_RATE = 20_000.0
TARGET_SHARE = 0.5
TARGET_P99 = 1.0
GROUP = "edugap"
TOPIC = "edugap/v1/+/+/+"
# session -> the MQTT reader its consumer ran ("fast" or "paho"), for the result
READERS: dict[str, str] = {}


# --- the backlog -------------------------------------------------------------------------


def backlog(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """n encoded reports with their topics: 70% heartbeat, 25% bandwidth, 5% inventory."""
    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        school, device = f"VN-{rng.randrange(2000):06d}", f"dev-{rng.randrange(20):02d}"
        at = t0 + timedelta(milliseconds=i * 30)
        roll = rng.random()
        if roll < 0.70:
            report: Any = heartbeat(school, device, at, checks=12, ok=rng.choice((11, 12)))
        elif roll < 0.95:
            report = bandwidth(school, device, at, down=round(rng.uniform(1, 120), 2))
        else:
            report = inventory(school, device, at, memory_mb=rng.choice((2048, 4096, 8192)))
        out.append((topic_for(school, device, report.kind), encode(report)))
    return out


def publish_all(settings: BrokerSettings, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 and wait for every PUBACK; returns the seconds it took."""
    client = new_client(settings, f"bench-pub-{new_report_id()[:8]}")
    client.max_inflight_messages_set(2000)
    client.connect(settings.host, settings.port, **connect_properties(settings, True))  # type: ignore[arg-type]
    client.loop_start()
    start = time.perf_counter()
    # in chunks: paho scans every queued message on each PUBACK, so 100,000 queued at once
    # would take minutes (quadratic); chunks of the inflight window keep it linear
    for at in range(0, len(messages), 2000):
        infos = [client.publish(t, p, qos=1) for t, p in messages[at : at + 2000]]
        for info in infos:
            info.wait_for_publish(60)
    took = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return took


# --- the consumers -----------------------------------------------------------------------


ingest_session = ingest_national.ingest_subscribe


def drain_ingest(store_url: str, settings: BrokerSettings, client_id: str, n: int) -> float:
    store = open_store(store_url)
    ingest = Ingest(store, settings, client_id=client_id, group=client_id, shared=True)
    READERS[client_id] = ingest.reader
    start = time.perf_counter()
    ingest.start()
    wait(
        lambda: ingest.stats.messages["stored"] + ingest.stats.messages["duplicate"] >= n,
        600,
        f"{client_id} to store {n} reports",
    )
    took = time.perf_counter() - start
    ingest.stop()
    stored = store.report_count()  # type: ignore[attr-defined]
    store.close()
    if stored != n:
        raise SystemExit(f"ingest stored {stored} of {n} reports into {store_url}")
    return took


class BarePaho:
    """Only counts messages: the least a Python MQTT consumer can do."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        receive_max: int,
        factory: ClientFactory = new_client,
    ) -> None:
        self.settings = settings
        self.count = 0
        self.subscribed = threading.Event()
        self.client = factory(settings, client_id, clean_start=False)
        READERS[client_id] = reader_of(self.client)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"$share/{client_id}/{TOPIC}", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.kwargs = connect_properties(settings, clean_start=False)
        if "properties" in self.kwargs:  # MQTT 5; for 3.1.1 the broker's limit applies
            self.kwargs["properties"].ReceiveMaximum = receive_max  # type: ignore[attr-defined]

    def _on_message(self, _c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        self.count += 1

    def run(self, until: int | None) -> float:
        start = time.perf_counter()
        self.client.connect(self.settings.host, self.settings.port, **self.kwargs)  # type: ignore[arg-type]
        self.client.loop_start()
        if until is None:
            wait(self.subscribed.is_set, 10, "the bare client to subscribe")
        else:
            wait(lambda: self.count >= until, 600, f"the bare client to count {until}")
        took = time.perf_counter() - start
        self.client.disconnect()
        self.client.loop_stop()
        return took


def mosquitto_sub(port: int, client_id: str, count: int | None) -> float:
    """`mosquitto_sub` with a persistent session; count None only creates the session."""
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", client_id, "-c", "-q", "1"]
    cmd += ["-t", f"$share/sub/{TOPIC}"]
    cmd += ["-E"] if count is None else ["-C", str(count)]
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - start


def store_only(store_url: str, messages: list[tuple[str, bytes]]) -> float:
    """The writer's work without MQTT: decode and save_batch in batches of 2,000."""
    store = open_store(store_url)
    start = time.perf_counter()
    now = datetime.now(UTC)
    for at in range(0, len(messages), 2000):
        batch = [Received(decode(t, p), now) for t, p in messages[at : at + 2000]]
        store.save_batch(batch)
    took = time.perf_counter() - start
    store.close()
    return took


# --- latency -------------------------------------------------------------------------------

COLLECTOR = """
import signal, sys, threading
from edugap.protocol.mqtt import parse_broker_url
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.store import open_store
store = open_store(sys.argv[1])
ingest = Ingest(store, parse_broker_url(sys.argv[2]), client_id="bench-latency")
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
ingest.start()
done.wait()
ingest.stop()
store.close()
"""


def latency(settings: BrokerSettings, db: str, rate: int, seconds: float) -> list[float]:
    """Publish `rate` reports/s for `seconds`; seconds from publish to visible in the store."""
    log = Path(db).with_suffix(".log")
    collector = python_child("latency collector", COLLECTOR, [db, settings.url], log).start()
    try:
        wait(lambda: Path(db).exists(), 20, f"the collector's store (log: {log})")
        conn = sqlite3.connect(db, check_same_thread=False)
        wait(lambda: _has_table(conn), 20, f"the collector's tables (log: {log})")
        time.sleep(1.0)  # let the collector subscribe
        published: dict[str, float] = {}
        visible: dict[str, float] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set() or len(visible) < len(published):
                with lock:
                    pending = [k for k in published if k not in visible]
                for start in range(0, len(pending), 500):
                    chunk = pending[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT report_id FROM report_ids WHERE report_id IN ({marks})", chunk
                    ).fetchall()
                    now = time.perf_counter()
                    for (rid,) in rows:
                        visible[rid] = now
                if stop.is_set() and time.perf_counter() > deadline:
                    return
                time.sleep(0.01)

        client = new_client(settings, "bench-latency-pub")
        client.max_inflight_messages_set(1000)
        client.connect(settings.host, settings.port, **connect_properties(settings, True))  # type: ignore[arg-type]
        client.loop_start()
        poller = threading.Thread(target=poll)
        deadline = float("inf")
        poller.start()
        step = 0.01
        per_step = max(1, int(rate * step))
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            for _ in range(per_step):
                report = bandwidth(f"VN-{i % 2000:06d}", "dev-01", datetime.now(UTC))
                payload = encode(report)
                with lock:
                    published[report.report_id] = time.perf_counter()
                client.publish(topic_for(report.school_id, "dev-01", "bandwidth"), payload, qos=1)
                i += 1
            next_at = t0 + (i / per_step) * step
            time.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + 30
        stop.set()
        poller.join()
        client.disconnect()
        client.loop_stop()
        conn.close()
        missing = len(published) - len(visible)
        if missing:
            raise SystemExit(f"latency run: {missing} reports never became visible")
        return sorted(visible[k] - published[k] for k in published)
    finally:
        collector.stop(30)


def _has_table(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM report_ids LIMIT 1")
        return True
    except sqlite3.Error:
        return False


# --- main ----------------------------------------------------------------------------------


# MQTT 3.1.1 clients cannot say how many unacknowledged messages they take, so the broker's
# limit must let a whole batch (2,000) through, as MQTT 5's Receive Maximum does
LIMITS = "autosave_interval 3600\nmax_inflight_messages 4000\n"


def one_run(
    n: int, messages: list[tuple[str, bytes]], run: int, pg: PrivatePostgres
) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="edugap-bench-ingest-"))
    try:
        with mosquitto(work / "mosquitto", LIMITS) as broker:
            result = drains(broker, pg.create_database(f"drain{run}"), work, n, messages, run)
            result["sqlite_store"] = store_only(str(work / "store-only.db"), messages)
            result["postgres_store"] = store_only(pg.create_database(f"alone{run}"), messages)
        print(
            f"run {run}: "
            + ", ".join(f"{k} {n / v:,.0f}/s" for k, v in result.items() if k != "publish"),
            flush=True,
        )
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def drains(
    broker: Mosquitto, pg_url: str, work: Path, n: int, messages: list[tuple[str, bytes]], run: int
) -> dict[str, float]:
    """Seven sessions queue one published backlog; each drains its copy in turn, timed."""
    settings = parse_broker_url(broker.url)
    v311 = dataclasses.replace(settings, mqtt_version=3)
    sqlite_db = str(work / "edugap.db")
    ingest_session(sqlite_db, settings, "bench-sqlite")
    ingest_session(pg_url, settings, "bench-pg")
    ingest_session(str(work / "v311.db"), v311, "bench-v311")
    BarePaho(settings, "bench-bare", 4000).run(None)
    BarePaho(v311, "bench-bare-v311", 4000).run(None)
    BarePaho(settings, "bench-fast", 4000, fast_client).run(None)
    mosquitto_sub(broker.port, "bench-sub", None)
    published = publish_all(settings, messages)
    result = {"publish": published}
    consumers: list[tuple[str, Callable[[], float]]] = [
        ("sqlite", lambda: drain_ingest(sqlite_db, settings, "bench-sqlite", n)),
        ("postgres", lambda: drain_ingest(pg_url, settings, "bench-pg", n)),
        ("paho", lambda: BarePaho(settings, "bench-bare", 4000).run(n)),
        ("fast", lambda: BarePaho(settings, "bench-fast", 4000, fast_client).run(n)),
        ("mosquitto_sub", lambda: mosquitto_sub(broker.port, "bench-sub", n)),
        ("sqlite_v311", lambda: drain_ingest(str(work / "v311.db"), v311, "bench-v311", n)),
        ("paho_v311", lambda: BarePaho(v311, "bench-bare-v311", 4000).run(n)),
    ]
    # a different order each run, so a change in machine load does not favour one consumer
    for name, drain in harness.rotated(consumers, run - 1):
        result[name] = drain()
    return result


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--runs", type=int, default=3)
        parser.add_argument("--reports", type=int, default=None)
        parser.add_argument(
            "--national-ids", type=int, default=None,
            help="report ids in the national-size store (default 5,000,000; quick 1,000,000;"
            " 0 skips the national part)",
        )  # fmt: skip

    parser = harness.arguments("ingest", __doc__, "20,000 reports, 5 s of latency", options)
    args = parser.parse_args(argv)
    n = args.reports or (20_000 if args.quick else 100_000)
    seconds = 5.0 if args.quick else 10.0
    messages = backlog(n)
    load_before = harness.load_average()
    with PrivatePostgres() as pg:
        runs = [one_run(n, messages, r + 1, pg) for r in range(args.runs)]
    ids = args.national_ids if args.national_ids is not None else (
        1_000_000 if args.quick else 5_000_000)  # fmt: skip
    national_runs = (
        ingest_national.run_all(
            messages,
            args.runs,
            ids,
            LIMITS,
            publish_all,
            lambda s, cid, until: BarePaho(s, cid, 4000).run(until),
            store_only,
        )
        if ids
        else []
    )
    keys = (
        "sqlite",
        "postgres",
        "paho",
        "fast",
        "mosquitto_sub",
        "sqlite_store",
        "postgres_store",
        "sqlite_v311",
        "paho_v311",
    )
    rates = {k: [n / r[k] for r in runs] for k in keys}
    med = {k: statistics.median(v) for k, v in rates.items()}
    work = Path(tempfile.mkdtemp(prefix="edugap-bench-latency-"))
    try:
        with mosquitto(work / "mosquitto", "autosave_interval 3600\n") as broker:
            lat = latency(parse_broker_url(broker.url), str(work / "lat.db"), 1000, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p50, p99, worst = harness.percentile(lat, 50), harness.percentile(lat, 99), max(lat)
    load = (load_before, harness.load_average())
    text = report_md(
        n, args.runs, med, rates, runs, (p50, p99, worst, len(lat), seconds),
        harness.command_line("ingest", argv), load,
    )  # fmt: skip
    if national_runs:
        text += "\n".join(["", *ingest_national.national_md(n, ids, national_runs), ""])
    harness.write_result(text, args.out)
    return 0


def bound_note(med: dict[str, float]) -> list[str]:
    """What limits the SQLite figure, stated from this run's own numbers."""
    if med["fast"] < TARGET_RATE:
        return [
            f"- What bounds it: the MQTT reader. Even `FastClient`, counting only, reaches "
            f"{med['fast']:,.0f}/s here; the store alone takes {med['sqlite_store']:,.0f}/s.",
        ]
    return [
        f"- What bounds it now: the writer thread (decode, `save_batch`, ack), which shares one "
        f"GIL with the reader. The reader alone (`FastClient`, counting) reaches "
        f"{med['fast']:,.0f}/s, {med['fast'] / med['paho']:.1f}x plain paho; the store alone "
        f"(decode + `save_batch`, no MQTT, no second thread) {med['sqlite_store']:,.0f}/s into "
        f"SQLite. Ingest is {med['sqlite'] / med['sqlite_store']:.2f} of the store-alone rate: "
        "the two threads' Python work adds up under one GIL (SQLite's own C work overlaps). "
        "Beyond one collector, more collectors join the share group, each its own process.",
    ]


# What was changed in the reader and writer to get here, and what did not help (measured on
# this machine with A/B runs of old and new code on one broker; other work shared the cores).
CHANGES = [
    "- How the reader was sped up (`edugap/collector/ingest/mqtt_fast.py`, paho-mqtt v2 kept, "
    "manual ack after commit unchanged): paho's `recv` of 1 byte, 1 byte, then the rest per "
    "packet, each after a `select`, became one 64 KiB `recv` served from a buffer, with "
    "`loop_read` repeated while the buffer holds bytes (buffered bytes are invisible to "
    "`select`); a QoS 0/1 PUBLISH lying whole in the buffer is decoded straight from it, without "
    "paho's per-packet dict and, for MQTT 5, without the empty Properties object paho builds per "
    "message (18 us each here); `on_message` is called without paho's topic matcher unless "
    "`message_callback_add` is used. Anything else (CONNACK, SUBACK, QoS 2, a PUBLISH with "
    "properties or split across reads) goes through paho's own code. The private paho names it "
    "relies on are checked when the client is made (`missing_internals()`, tested); if a paho "
    "release changes them, ingest falls back to the plain client, says so in a WARNING at start "
    'and in `edugap_collector_ingest_reader_info{reader="paho"}`, and this bench names the '
    "reader that ran.",
    "- Buffered reads alone (first step, quick run): counting 4.2x plain paho; with the direct "
    "PUBLISH decode: about 6x.",
    "- Tried, did not help: decoding each message on paho's thread (in `on_message`) so it "
    "overlaps the writer's database waits: A/B medians 17.6k/s vs 19.7k/s for the old hand-over, "
    "so the writer keeps decoding. Counting queued messages without a lock per message: within "
    "noise (kept, it is simpler).",
    "- How the SQLite batch write was made cheaper (same WAL + synchronous=FULL, one transaction "
    "per batch, ack after commit, same idempotency and stored rows; store-alone A/B of old and "
    "new code, 100,000 reports, 5 alternating runs each): WAL checkpoint every 10,000 pages "
    "instead of SQLite's 1,000 (a checkpoint copies every dirtied page back and fsyncs the "
    "database; random report ids re-dirty most pages batch after batch): 1.14x, and 1.11x with "
    "2,000,000 ids already stored; the log file then grows to about 40 MiB. A well-formed topic "
    "parsed by one regex (the step-by-step checks still give every rejection reason): about "
    "1.03x. Rows written unsorted in SQLite (BEGIN IMMEDIATE already serialises writers, so no "
    "key order is needed against deadlocks): about 1.03x. Together: store-alone decode + save "
    "27.7k/s -> 33.6k/s in that A/B.",
    "- Tried, did not help (reverted): one `INSERT ... ON CONFLICT DO NOTHING RETURNING` per 500 "
    "ids instead of SELECT of known ids + INSERT (report-id time 250 ms vs 182 ms per 40,000: "
    "SQLite buffers RETURNING rows); `INSERT OR IGNORE` per id reading `rowcount` (about equal, "
    "more Python calls); page_size 1,024 or 2,048 (0.8-0.9x); page_size 8-64 KiB looks 1.3-1.4x "
    "on this small bench database but with 2,000,000 stored ids is 0.5-0.94x of 4 KiB pages at "
    "the same log size (each random id dirties a whole, larger page), so the default 4 KiB stays;"
    " temp_store=MEMORY: within noise. What remains is mostly SQLite's own work: B-tree inserts "
    "of random UUID report ids (which grow with the stored ids: store-alone halves from 100,000 "
    "to 2,000,000 stored ids) and the commit's log write and fsync.",
    "- Honest attribution: this run's machine was quieter than the previous one (load 0.6-1.0 "
    "against 1.9-2.7; bare paho 10.0k -> 11.4k/s, `FastClient` 55k -> 78k/s), so most of the jump"
    " 17,221 -> 27,501/s is load. Same-load A/B of old and new code (`--quick --runs 1`, "
    "alternated twice): `Ingest` -> SQLite 32.0k and 29.1k/s old vs 33.7k and 31.3k/s new (about "
    "1.06x); store alone 43.7k and 28.1k vs 47.6k and 50.5k/s.",
    "- How the PostgreSQL batch write was made fast (one transaction per batch, ack after commit,"
    " idempotency, stored rows and the poison split unchanged): every statement binds whole "
    "columns as arrays in binary (`%b`): psycopg's text form of an array quotes each element "
    "through a regex, which cost the writer more than the server's work took (2,000 ids: 7.2 ms "
    "as text, 1.0 ms in binary); the row writes after the id insert go in one pipeline (speed "
    "tests by INSERT ... unnest rather than COPY, which a pipeline cannot carry), so the server "
    "runs one statement while Python builds the next. Store alone, old and new code alternated "
    "on one private PostgreSQL (40,000 reports, two runs each): writer CPU 19.0-20.1 -> 9.1-9.4 "
    "us/report, server backend 15.8-16.5 -> 12.8 us/report, wall 16.5k-25.6k -> 39.1k-45.3k/s. "
    "Before, through MQTT: `Ingest` -> PostgreSQL 11,690/s against bare paho's 18,399/s (0.64x)"
    " in one run of the previous code, 14,646 against 11,365/s (1.29x) in its recorded result; "
    "store alone 17,750/s into PostgreSQL then.",
    "- Report ids keyed by (measured_at as the agent sent it, school, id) instead of (id, "
    "school): new ids go to the end of the index and a redelivery's lookup lands among recent "
    "ones, so a batch touches a few pages however many ids the 14-day window holds (random "
    "UUIDs first in the key sent every id to a random page of the whole index). Migration 0005 "
    "keeps the earlier ids in `report_ids_v2`, checked until pruned (docs/operations.md).",
]


def report_md(
    n: int,
    nruns: int,
    med: dict[str, float],
    rates: dict[str, list[float]],
    runs: list[dict[str, float]],
    lat: tuple[float, float, float, int, float],
    command: str,
    load: tuple[float, float],
) -> str:
    p50, p99, worst, count, seconds = lat
    share = med["sqlite"] / med["paho"]
    rate_met = med["sqlite"] >= TARGET_RATE
    fast_ratio = med["fast"] / med["paho"]
    share_met = share >= TARGET_SHARE
    p99_met = p99 < TARGET_P99

    def row(label: str, key: str) -> str:
        runs_text = ", ".join(f"{r:,.0f}" for r in rates[key])
        return f"| {label} | {med[key]:,.0f} | {runs_text} |"

    publish = statistics.median(r["publish"] for r in runs)
    return "\n".join(
        [
            f"## MQTT ingest (backlog of {n:,} reports)",
            "",
            f"- Machine: {machine()}",
            f"- Load: {harness.shared_note(*load)}.",
            reader_note(),
            f"- Command: `{command}` ({nruns} run{'s' if nruns != 1 else ''}, medians)",
            f"- Backlog: {n:,} reports (70% heartbeat, 25% bandwidth, 5% inventory, 2,000 "
            f"schools) published at QoS 1 to seven offline persistent sessions (median "
            f"{n / publish:,.0f}/s to publish), then each session drained in turn; a drain is "
            "timed from connect to the last message stored (or counted).",
            "",
            "| consumer | median reports/s | runs |",
            "| --- | --- | --- |",
            row("**measured**: `Ingest` -> SQLite (ack after commit)", "sqlite"),
            row("**measured**: `Ingest` -> PostgreSQL", "postgres"),
            row("**baseline**: bare paho-mqtt client, counting only", "paho"),
            row(
                "reader: paho `FastClient` (edugap.collector.ingest.mqtt_fast), counting only",
                "fast",
            ),
            row("ceiling: `mosquitto_sub` > /dev/null", "mosquitto_sub"),
            row("`Ingest` -> SQLite over MQTT 3.1.1", "sqlite_v311"),
            row("bare paho-mqtt client over MQTT 3.1.1", "paho_v311"),
            row("store alone: decode + `save_batch` into SQLite, no MQTT", "sqlite_store"),
            row("store alone: decode + `save_batch` into PostgreSQL, no MQTT", "postgres_store"),
            "",
            f"- SQLite: **{med['sqlite']:,.0f} reports/s**; target >= {TARGET_RATE:,.0f}: "
            f"**{'met' if rate_met else 'not met'}**.",
            f"- Ratio Ingest->SQLite / bare paho: **{share:.2f}**; target >= {TARGET_SHARE}: "
            f"**{'met' if share_met else 'not met'}**.",
            f"- Ratio Ingest->PostgreSQL / bare paho: {med['postgres'] / med['paho']:.2f}; "
            f"bare paho / mosquitto_sub: {med['paho'] / med['mosquitto_sub']:.2f}; "
            f"`FastClient` / bare paho: {fast_ratio:.2f}; `FastClient` / mosquitto_sub: "
            f"{med['fast'] / med['mosquitto_sub']:.2f}.",
            *bound_note(med),
            *CHANGES,
            f"- MQTT 3.1.1 instead of 5: bare paho {med['paho_v311'] / med['paho']:.2f}x (plain "
            "paho builds an MQTT 5 Properties object for every message; `FastClient` does not), "
            f"`Ingest` -> SQLite {med['sqlite_v311'] / med['sqlite']:.2f}x. 3.1.1 needs the "
            "broker's `max_inflight_messages` >= `ingest.batch_max` and has no session expiry.",
            f"- Publish-to-visible at 1,000 reports/s for {seconds:.0f} s ({count:,} reports; "
            "collector in its own process, SQLite, default batch_seconds 0.2; store polled "
            f"every 10 ms): p50 {p50 * 1000:.0f} ms, **p99 {p99 * 1000:.0f} ms**, max "
            f"{worst * 1000:.0f} ms; target p99 < 1 s: **{'met' if p99_met else 'not met'}**.",
            "",
        ]
    )


def reader_note() -> str:
    """Which MQTT reader ran where the fast one was meant to: `Ingest` and the FastClient line."""
    meant = {k: v for k, v in READERS.items() if not k.startswith("bench-bare")}
    if set(meant.values()) == {"fast"}:
        return (
            f"- MQTT reader: `fast` (`FastClient`) in every `Ingest` drain and the `FastClient` "
            f"line, on paho-mqtt {paho_version()}."
        )
    why = fallback_warning() or "a client factory other than fast_client"
    return (
        f"- MQTT reader: **paho's own ran where `FastClient` was meant to** ({why}); these "
        "figures are not comparable with runs on the fast reader."
    )


def machine() -> str:
    parts = harness.versions(
        mosquitto=True, sqlite=True, postgres_url=postgres_admin_url(), packages=("paho-mqtt",)
    )
    return harness.machine_line(*parts)


if __name__ == "__main__":
    harness.main(main)
