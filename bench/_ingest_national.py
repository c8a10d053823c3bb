"""bench/ingest.py's national part: empty against national-size stores, one against two
collectors on one PostgreSQL, each beside a bare paho drain of the same backlog in the same run.

A national-size store holds report ids spread over the 14-day window and 600,000 devices'
latest rows (60,000 schools x 10), filled with bulk SQL (generate_series, a recursive CTE), not
through MQTT; each run drains into a copy of it (a file copy for SQLite, a template database for
PostgreSQL). PostgreSQL is a private server (bench/harness/pgserver.py): no test on the machine's
server disturbs it. Two collectors are two processes in one shared-subscription group; the
broker hands each its share of the backlog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import harness
import psycopg
from harness.parts import Mosquitto
from harness.pgserver import PrivatePostgres
from harness.procs import Child, python_child
from harness.runs import wait

from edugap.collector.ingest.consumer import Ingest
from edugap.collector.store import open_store
from edugap.protocol.mqtt import BrokerSettings, parse_broker_url

SCHOOLS = 60_000
DEVICES_PER_SCHOOL = 10
WINDOW = timedelta(days=14)

COLLECTOR = """
import os, signal, sys, threading, time
from pathlib import Path
from edugap.protocol.mqtt import parse_broker_url
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.store import open_store
store_url, broker_url, client_id, group, go, ready = sys.argv[1:7]
store = open_store(store_url)
ingest = Ingest(store, parse_broker_url(broker_url), client_id=client_id, group=group, shared=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
Path(ready + ".waiting").touch()
while not os.path.exists(go) and not done.is_set():
    time.sleep(0.002)
ingest.start()
while not ingest.ready() and not done.is_set():
    time.sleep(0.01)
Path(ready).touch()
progress, part = Path(ready + ".count"), Path(ready + ".part")
while not done.wait(0.01):  # how many it has stored, for the bench to sum; replaced whole
    m = ingest.stats.messages
    part.write_text(str(m["stored"] + m["duplicate"]))
    part.replace(progress)
ingest.stop()
store.close()
"""


# --- national-size stores ------------------------------------------------------------------


def prefill_postgres(url: str, ids: int, until: datetime) -> None:
    """`ids` report ids over the window before `until`, and 600,000 devices."""
    open_store(url).close()  # the schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO report_ids (measured_at, school_id, report_id, received_at)"
            " SELECT t, 'VN-' || lpad((g %% %s)::text, 6, '0'), gen_random_uuid()::text,"
            " t + interval '2 seconds' FROM (SELECT g, %s::timestamptz"
            " - (g::float8 / %s) * %s::interval AS t FROM generate_series(1, %s) g) s",
            (SCHOOLS, until, ids, WINDOW, ids),
        )
        conn.execute(
            "INSERT INTO devices (school_id, device_id, last_seen)"
            " SELECT 'VN-' || lpad(s::text, 6, '0'), 'dev-' || lpad(d::text, 2, '0'), %s"
            " FROM generate_series(0, %s) s, generate_series(0, %s) d",
            (until, SCHOOLS - 1, DEVICES_PER_SCHOOL - 1),
        )
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def prefill_sqlite(path: str, ids: int, until: datetime) -> None:
    """The same for SQLite (hex ids of 32 characters rather than 36: about the same size)."""
    open_store(path).close()
    end, span = until.timestamp(), WINDOW.total_seconds()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)"
        " INSERT INTO report_ids (measured_at, school_id, report_id, received_at)"
        " SELECT ? - i * ?, printf('VN-%06d', i % ?), lower(hex(randomblob(16))), ? - i * ? + 2"
        " FROM g",
        (ids, end, span / ids, SCHOOLS, end, span / ids),
    )
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?),"
        " d(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM d WHERE j < ?)"
        " INSERT INTO devices (school_id, device_id, last_seen)"
        " SELECT printf('VN-%06d', i), printf('dev-%02d', j), ? FROM s, d",
        (SCHOOLS - 1, DEVICES_PER_SCHOOL - 1, end),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def clone_postgres(pg: PrivatePostgres, template: str, name: str) -> str:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        conn.execute("CHECKPOINT")
    settle()
    return pg.url(name)


def copy_sqlite(template: str, path: str) -> None:
    shutil.copy(template, path)
    settle()


def settle() -> None:
    """Write a copy's pages out before a timed drain: otherwise the kernel writes them back
    during it, and the store's fsyncs at each commit wait behind hundreds of MB."""
    os.sync()


def report_ids(url: str) -> int:
    """Stored report ids, read straight from the store (a count)."""
    if "://" in url and not url.startswith("sqlite"):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM report_ids").fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM report_ids").fetchone()[0])


# --- drains --------------------------------------------------------------------------------


def busy_cores() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class Collectors:
    """`count` collector processes in one share group, on one store."""

    def __init__(self, work: Path, name: str, store_url: str, broker_url: str, count: int):
        self.work, self.name, self.count = work, name, count
        self.store_url, self.broker_url = store_url, broker_url
        self.go = work / f"{name}.go"
        self.children: list[Child] = []
        self.shares: list[float] = []  # of the backlog, per collector, in the last drain

    def _start(self) -> list[Path]:
        readies = []
        for k in range(self.count):
            ready = self.work / f"{self.name}-{k}.ready"
            for p in (ready, Path(f"{ready}.waiting"), Path(f"{ready}.count")):
                p.unlink(missing_ok=True)
            args = [self.store_url, self.broker_url, f"bench-{self.name}-{k}", self.name,
                    str(self.go), str(ready)]  # fmt: skip
            log = self.work / f"{self.name}-{k}.log"
            self.children.append(python_child(f"collector {k}", COLLECTOR, args, log).start())
            readies.append(ready)
        return readies

    def _stop(self) -> None:
        for child in self.children:
            child.stop(30)
        self.children = []

    def subscribe(self) -> None:
        """Create the group's persistent sessions, then leave them offline."""
        self.go.touch()
        readies = self._start()
        wait(lambda: all(r.exists() for r in readies), 60, f"{self.name} to subscribe")
        self._stop()

    def drain(self, expected: int) -> tuple[float, float, float]:
        """Seconds until the store holds `expected` ids; the collectors' CPU seconds; the
        machine's busy share of its cores over the drain."""
        self.go.unlink(missing_ok=True)
        readies = self._start()
        try:
            wait(lambda: all(Path(f"{r}.waiting").exists() for r in readies), 60, "imports")
            busy0, total0 = busy_cores()
            start = time.perf_counter()
            self.go.touch()
            wait(lambda: _counted(readies) >= expected, 600, f"{self.name} to drain")
            took = time.perf_counter() - start
            busy1, total1 = busy_cores()
            cpu = sum(cpu_seconds(c.pid) for c in self.children if c.pid)
            time.sleep(0.05)  # each child's last count
            self.shares = [_counted([r]) / expected for r in readies]
        finally:
            self._stop()
        if report_ids(self.store_url) != expected:
            raise SystemExit(f"{self.name} stored {report_ids(self.store_url)} of {expected}")
        return took, cpu, (busy1 - busy0) / (total1 - total0)


def _counted(readies: list[Path]) -> int:
    total = 0
    for ready in readies:
        with contextlib.suppress(OSError, ValueError):  # not written yet, or mid-write
            total += int(Path(f"{ready}.count").read_text() or 0)
    return total


def ingest_drain(
    store_url: str, settings: BrokerSettings, client_id: str, n: int, expected: int
) -> float:
    """One in-process `Ingest` (as bench/ingest.py's main table) until it has taken `n`
    reports; the store then holds `expected` ids."""
    store = open_store(store_url)
    ingest = Ingest(store, settings, client_id=client_id, group=client_id, shared=True)
    start = time.perf_counter()
    ingest.start()
    stats = ingest.stats.messages
    wait(lambda: stats["stored"] + stats["duplicate"] >= n, 600, f"{client_id} to drain")
    took = time.perf_counter() - start
    ingest.stop()
    store.close()
    if report_ids(store_url) != expected:
        raise SystemExit(f"{client_id} stored {report_ids(store_url)} ids, not {expected}")
    return took


def ingest_subscribe(store_url: str, settings: BrokerSettings, client_id: str) -> None:
    """Create a collector's persistent session (connect, subscribe, leave)."""
    store = open_store(store_url)
    # its own share group: two sessions in one group would split the backlog between them
    ingest = Ingest(store, settings, client_id=client_id, group=client_id, shared=True)
    ingest.start()
    wait(ingest.ready, 10, f"{client_id} to subscribe")
    ingest.stop()
    store.close()


Drain = Callable[[], float]


def national_run(
    broker: Mosquitto,
    pg: PrivatePostgres,
    templates: tuple[str, str],
    ids: int,
    work: Path,
    messages: list[tuple[str, bytes]],
    run: int,
    publish: Callable[[BrokerSettings, list[tuple[str, bytes]]], float],
    bare: Callable[[BrokerSettings, str, int | None], float],
    store_only: Callable[[str, list[tuple[str, bytes]]], float],
) -> dict[str, float]:
    """One run: the backlog drained by each consumer in turn, and the store alone."""
    n = len(messages)
    settings = parse_broker_url(broker.url)
    sqlite_template, pg_template = templates
    urls = {
        "sqlite_empty": str(work / f"empty-{run}.db"),
        "sqlite_national": str(work / f"national-{run}.db"),
        "pg_empty": pg.create_database(f"empty{run}"),
        "pg_national": clone_postgres(pg, pg_template, f"national{run}"),
        "pg_one": pg.create_database(f"one{run}"),
        "pg_two": pg.create_database(f"two{run}"),
    }
    copy_sqlite(sqlite_template, urls["sqlite_national"])
    base = {"sqlite_national": ids, "pg_national": ids}
    for key in ("sqlite_empty", "sqlite_national", "pg_empty", "pg_national"):
        ingest_subscribe(urls[key], settings, f"bench-n-{key}")
    bare(settings, "bench-bare-n", None)
    groups = {
        "pg_one": Collectors(work, f"one{run}", urls["pg_one"], broker.url, 1),
        "pg_two": Collectors(work, f"two{run}", urls["pg_two"], broker.url, 2),
    }
    for group in groups.values():
        open_store(group.store_url).close()
        group.subscribe()
    result = {"publish": publish(settings, messages)}

    def in_process(key: str) -> Drain:
        return lambda: ingest_drain(urls[key], settings, f"bench-n-{key}", n, base.get(key, 0) + n)

    def processes(key: str) -> Drain:
        def drain() -> float:
            took, cpu, busy = groups[key].drain(n)
            result[f"{key}_cpu"], result[f"{key}_busy"] = cpu, busy
            result[f"{key}_share"] = min(groups[key].shares)
            return took

        return drain

    consumers: list[tuple[str, Drain]] = [
        *(
            (k, in_process(k))
            for k in ("sqlite_empty", "sqlite_national", "pg_empty", "pg_national")
        ),
        ("paho", lambda: bare(settings, "bench-bare-n", n)),
        ("pg_one", processes("pg_one")),
        ("pg_two", processes("pg_two")),
    ]
    for name, drain in harness.rotated(consumers, run - 1):
        result[name] = drain()
    # the store alone (decode + save_batch, no MQTT) into fresh copies of both sizes
    alone = {
        "sqlite_empty_store": str(work / f"alone-empty-{run}.db"),
        "sqlite_national_store": str(work / f"alone-national-{run}.db"),
        "pg_empty_store": pg.create_database(f"aloneempty{run}"),
        "pg_national_store": clone_postgres(pg, pg_template, f"alonenational{run}"),
    }
    copy_sqlite(sqlite_template, alone["sqlite_national_store"])
    for name, url in harness.rotated(list(alone.items()), run - 1):
        result[name] = store_only(url, messages)
    for path in work.glob(f"*-{run}.db*"):
        path.unlink()
    print(
        f"national run {run}: "
        + ", ".join(
            f"{k} {n / v:,.0f}/s"
            for k, v in result.items()
            if not k.endswith(NOT_TIMES) and k != "publish"
        ),
        flush=True,
    )
    return result


def templates(pg: PrivatePostgres, work: Path, ids: int, until: datetime) -> tuple[str, str]:
    """The national-size stores every run copies: (SQLite file, PostgreSQL database name)."""
    start = time.perf_counter()
    sqlite_path = str(work / "national-template.db")
    prefill_sqlite(sqlite_path, ids, until)
    prefill_postgres(pg.create_database("national"), ids, until)
    print(f"national-size stores filled in {time.perf_counter() - start:.0f} s", flush=True)
    return sqlite_path, "national"


def backlog_start() -> datetime:
    """Where bench/ingest.py's backlog begins (an hour ago): the prefilled ids end there."""
    return datetime.now(UTC) - timedelta(hours=1, minutes=1)


def run_all(
    messages: list[tuple[str, bytes]],
    runs: int,
    ids: int,
    mosquitto_limits: str,
    publish: Callable[[BrokerSettings, list[tuple[str, bytes]]], float],
    bare: Callable[[BrokerSettings, str, int | None], float],
    store_only: Callable[[str, list[tuple[str, bytes]]], float],
) -> list[dict[str, float]]:
    """Every national run on one broker and one private PostgreSQL."""
    from harness.parts import mosquitto

    work = Path(tempfile.mkdtemp(prefix="edugap-bench-national-"))
    try:
        with PrivatePostgres() as pg, mosquitto(work / "mosquitto", mosquitto_limits) as broker:
            made = templates(pg, work, ids, backlog_start())
            return [
                national_run(
                    broker, pg, made, ids, work, messages, r + 1, publish, bare, store_only
                )
                for r in range(runs)
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# The report id key, old against new: bench/_report_ids_ab.py (each side its own tree's code
# and migrations, store alone, 60,000 reports; machine shared, load average about 3).
KEY_AB = [
    "- The report id key, A/B (`.venv/bin/python bench/_report_ids_ab.py --old a3c3a79 --ids "
    "3000000 --runs 2`; store alone, 60,000 reports into an empty store and into one holding "
    "3,000,000 ids and 600,000 devices; old code keys ids on the id first, new code on the "
    "measured time first; runs in the order they ran):",
    "",
    "| store | key | empty store /s | 3,000,000 ids stored /s | ratio |",
    "| --- | --- | --- | --- | --- |",
    "| sqlite | id first | 48,510 | 30,210 | 0.62 |",
    "| sqlite | measured time first | 96,620 | 80,532 | 0.83 |",
    "| postgres | id first | 22,839 | 24,480 | 1.07 |",
    "| postgres | measured time first | 53,054 | 55,612 | 1.05 |",
    "| sqlite | measured time first | 91,836 | 86,980 | 0.95 |",
    "| sqlite | id first | 57,607 | 17,017 | 0.30 |",
    "| postgres | measured time first | 25,970 | 24,948 | 0.96 |",
    "| postgres | id first | 32,127 | 25,733 | 0.80 |",
    "",
    "- SQLite with the id first slowed to 0.30-0.62 of its empty-store rate at 3,000,000 ids "
    "(its 64 MiB page cache holds a small part of a random-keyed index); with the measured time "
    "first it stayed at 0.83-0.95. PostgreSQL with the id first held (0.80-1.07) at this size: "
    "the server's cache and the kernel's page cache (24 GiB here) still held the whole index. "
    "A national window (about 1.8 billion ids on 15-minute heartbeats, about 200 GB of ids) "
    "holds no such thing; with the measured time first the pages a batch touches are the newest"
    " ones at any size (derived, not measured at that size).",
]

NOT_TIMES = ("_cpu", "_busy", "_share")  # result keys that are not a drain's seconds
TARGET_VS_PAHO = 1.0
TARGET_TWO = 1.7
TARGET_HOLD = 0.8


def national_md(n: int, ids: int, runs: list[dict[str, float]]) -> list[str]:
    """The national part of the result."""

    def rate(key: str) -> list[float]:
        return [n / r[key] for r in runs]

    med = {k: harness.median(rate(k)) for k in runs[0] if not k.endswith(NOT_TIMES)}

    def row(label: str, key: str) -> str:
        return f"| {label} | {med[key]:,.0f} | {', '.join(f'{v:,.0f}' for v in rate(key))} |"

    vs_paho = med["pg_empty"] / med["paho"]
    two = med["pg_two"] / med["pg_one"]
    hold_sqlite = med["sqlite_national"] / med["sqlite_empty"]
    hold_pg = med["pg_national"] / med["pg_empty"]
    hold_sqlite_store = med["sqlite_national_store"] / med["sqlite_empty_store"]
    hold_pg_store = med["pg_national_store"] / med["pg_empty_store"]

    def paired(a: str, b: str) -> str:
        return ", ".join(f"{r[b] / r[a]:.2f}" for r in runs)  # times: rate a / rate b

    cpu_one = harness.median(r["pg_one_cpu"] for r in runs) / n * 1e6
    cpu_two = harness.median(r["pg_two_cpu"] for r in runs) / n * 1e6
    busy_one = harness.median(r["pg_one_busy"] for r in runs)
    busy_two = harness.median(r["pg_two_busy"] for r in runs)
    least = ", ".join(f"{r['pg_two_share']:.0%}" for r in runs)
    return [
        f"### National size, and two collectors (same {n:,}-report backlog)",
        "",
        f"- National-size store: {ids:,} report ids spread over the 14-day id window and "
        f"{SCHOOLS * DEVICES_PER_SCHOOL:,} devices' latest rows ({SCHOOLS:,} schools x "
        f"{DEVICES_PER_SCHOOL}), filled with bulk SQL; each run drains into a copy. PostgreSQL: "
        "a private server (bench/harness/pgserver.py, default settings). The backlog is published"
        " once to every session below, then each drains in turn (order rotated per run).",
        "",
        "| consumer | median reports/s | runs |",
        "| --- | --- | --- |",
        row("`Ingest` -> SQLite, empty store", "sqlite_empty"),
        row("`Ingest` -> SQLite, national-size store", "sqlite_national"),
        row("`Ingest` -> PostgreSQL, empty store", "pg_empty"),
        row("`Ingest` -> PostgreSQL, national-size store", "pg_national"),
        row("**baseline**: bare paho-mqtt client, counting only", "paho"),
        row("one collector process -> PostgreSQL", "pg_one"),
        row("two collector processes, one share group -> PostgreSQL", "pg_two"),
        row("store alone: decode + `save_batch` -> SQLite, empty", "sqlite_empty_store"),
        row("store alone: decode + `save_batch` -> SQLite, national-size", "sqlite_national_store"),
        row("store alone: decode + `save_batch` -> PostgreSQL, empty", "pg_empty_store"),
        row("store alone: decode + `save_batch` -> PostgreSQL, national-size", "pg_national_store"),
        "",
        f"- `Ingest` -> PostgreSQL / bare paho: **{vs_paho:.2f}**; target >= {TARGET_VS_PAHO}: "
        f"{harness.verdict(vs_paho >= TARGET_VS_PAHO)}.",
        f"- National-size / empty store, through MQTT: SQLite **{hold_sqlite:.2f}**, PostgreSQL "
        f"**{hold_pg:.2f}**; store alone: SQLite {hold_sqlite_store:.2f}, PostgreSQL "
        f"{hold_pg_store:.2f}; target >= {TARGET_HOLD} (within 20 %): "
        f"{harness.verdict(min(hold_sqlite, hold_pg) >= TARGET_HOLD)}.",
        "- The same ratios run by run (each side drained the same backlog in that run): "
        f"PostgreSQL / bare paho {paired('pg_empty', 'paho')}; national / empty through MQTT: "
        f"SQLite {paired('sqlite_national', 'sqlite_empty')}, PostgreSQL "
        f"{paired('pg_national', 'pg_empty')}; store alone: SQLite "
        f"{paired('sqlite_national_store', 'sqlite_empty_store')}, PostgreSQL "
        f"{paired('pg_national_store', 'pg_empty_store')}; two collectors / one "
        f"{paired('pg_two', 'pg_one')}.",
        f"- Two collectors / one: **{two:.2f}**; target >= {TARGET_TWO}: "
        f"{harness.verdict(two >= TARGET_TWO)}. Collector CPU per report: one "
        f"{cpu_one:.0f} us, two {cpu_two:.0f} us (summed); the machine's cores were "
        f"{busy_one:.0%} busy during the one-collector drain and {busy_two:.0%} during the "
        "two-collector drain (broker, PostgreSQL and other work included). The broker split the "
        f"backlog between the two: the smaller share per run {least}.",
        *KEY_AB,
    ]
