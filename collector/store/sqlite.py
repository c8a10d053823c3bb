"""SQLite store: one writer connection behind a lock, readers on their own pooled connections.

WAL lets readers (HTTP, policy) run while the ingest writer commits. synchronous=FULL: with
WAL this fsyncs the log once per commit, i.e. once per batch of up to a few thousand reports,
which is cheap; NORMAL could lose the last commits on power loss *after* ingest acknowledged
them to the broker, and the broker would then never redeliver them.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.model import (
    REJECT_EXCERPT_CHARS,
    BandwidthRow,
    DeviceRow,
    HeartbeatHour,
    Received,
    Reject,
    School,
    StoreError,
)
from collector.store import sqlite_path
from collector.store.collectors_sql import SqliteCollectors
from collector.store.migrations import migrations, statements
from collector.store.prepare import (
    bounded,
    clean,
    first_occurrences,
    inventory_json,
    prepare,
    to_datetime,
)
from collector.store.sqlite_sums import SqliteSums, _ts

log = logging.getLogger(__name__)

#: Rejects kept; older ones are deleted as new ones arrive.
REJECTS_KEPT = 5000
#: Log pages (4 KiB each by default) between automatic checkpoints; SQLite's default is 1000.
WAL_CHECKPOINT_PAGES = 10000
# SQLite before 3.32 allows 999 bound parameters per statement; stay below it.
_CHUNK = 900


def _dt_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else to_datetime(ts)


class SqliteStore(SqliteSums, SqliteCollectors):
    """The SQLite backend of `collector.model.Store`."""

    def __init__(
        self, url: str, *, rejects_kept: int = REJECTS_KEPT, busy_timeout_ms: int = 10000
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.path = sqlite_path(url)
        self.rejects_kept = rejects_kept
        self._lock = threading.Lock()  # the one writer connection
        self._conns_lock = threading.Lock()  # the list of every connection, for close()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        try:
            parent = Path(self.path).parent
            if not parent.exists():
                raise OSError(f"directory {parent} does not exist")
            self._writer = self._connect()
            self._migrate()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite store {url}: {e}") from e

    # --- connections ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one batch is one transaction
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoint every ~40 MiB of log rather than SQLite's 4 MiB: each checkpoint copies
        # every page the batches dirtied back into the database file and fsyncs it, and most of
        # a batch's pages (random report ids) are dirtied again by the next batches, so rarer
        # checkpoints copy each page fewer times. Durability is unchanged: a commit is durable
        # once the log is fsynced (synchronous=FULL); the checkpoint only moves pages.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # another process (an `edugap schools import` beside `edugap serve`) may hold the lock
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: the report id index stays in memory
        with self._conns_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            with self._reader() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read from {self.url}: {e}") from e

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except (sqlite3.Error, ValueError, OverflowError) as e:
                raise StoreError(f"cannot {what} to {self.url}: {e}") from e

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for version, name, sql in migrations("sqlite"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = conn.execute(
                    "SELECT 1 FROM schema_version WHERE version = ?", (version,)
                ).fetchone()
                if done is None:
                    log.info("applying SQLite migration %s to %s", name, self.url)
                    # executescript would commit first; run the statements one by one instead
                    for statement in statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, time.time())
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """The highest migration applied."""
        rows = self._read("SELECT max(version) FROM schema_version")
        return int(rows[0][0] or 0)

    # --- writes --------------------------------------------------------------------------

    def save_batch(self, batch: list[Received]) -> list[bool]:
        if not batch:
            return []
        indexes, ids = first_occurrences(batch)
        stored = [False] * len(batch)
        with self._transaction("write batch") as conn:
            known: set[str] = set()
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                known.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT report_id FROM report_ids WHERE report_id IN ({marks})", chunk
                    )
                )
            new_indexes = [i for i, rid in zip(indexes, ids, strict=True) if rid not in known]
            new = [batch[i] for i in new_indexes]
            conn.executemany(
                "INSERT INTO report_ids (report_id, received_at) VALUES (?, ?)",
                [(r.report.report_id, _ts(r.received_at)) for r in new],
            )
            self._write_rows(conn, new)
        for i in new_indexes:
            stored[i] = True
        return stored

    def _write_rows(self, conn: sqlite3.Connection, new: list[Received]) -> None:
        # Unsorted, unlike PostgreSQL's: BEGIN IMMEDIATE already lets one writer in at a time,
        # so no key order is needed to keep two collectors from deadlocking.
        rows = prepare(new)
        conn.executemany(
            "INSERT INTO bandwidth (report_id, school_id, device_id, measured_at, download_mbps,"
            " upload_mbps, latency_ms, error, skipped, backend, bytes_used)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    clean(b.report_id),
                    b.school_id,
                    b.device_id,
                    at,
                    b.download_mbps,
                    b.upload_mbps,
                    b.latency_ms,
                    clean(b.error),
                    int(b.skipped),
                    clean(b.backend),
                    bounded(b.bytes_used),
                )
                for b, at in rows.bandwidth
            ],
        )
        conn.executemany(
            "INSERT INTO devices (school_id, device_id, last_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (school_id, device_id) DO UPDATE"
            " SET last_seen = max(devices.last_seen, excluded.last_seen)",
            [(s, d, at) for (s, d), at in rows.last_seen.items()],
        )
        conn.executemany(
            "UPDATE devices SET inventory_at = ?, memory_mb = ?, cpu_cores = ?, os_name = ?,"
            " os_version = ?, out_of_support = ?, machine_kind = ?, hardware_hash = ?,"
            " inventory = ?"
            " WHERE school_id = ? AND device_id = ?"
            " AND (inventory_at IS NULL OR inventory_at <= ?)",
            [
                (
                    at,
                    bounded(inv.memory_mb),
                    bounded(inv.cpu.cores),
                    clean(inv.os.name),
                    clean(inv.os.version),
                    None if inv.os.out_of_support is None else int(inv.os.out_of_support),
                    inv.machine_kind,
                    clean(inv.hardware_hash),
                    inventory_json(inv),
                    school,
                    device,
                    at,
                )
                for (school, device), (inv, at) in rows.inventories.items()
            ],
        )
        conn.executemany(
            "INSERT INTO heartbeat_hours (school_id, hour, heartbeats, checks, checks_ok)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (school_id, hour) DO UPDATE SET"
            " heartbeats = heartbeats + excluded.heartbeats,"
            " checks = checks + excluded.checks, checks_ok = checks_ok + excluded.checks_ok",
            [(s, h, v.heartbeats, v.checks, v.checks_ok) for (s, h), v in rows.hours.items()],
        )
        conn.executemany(
            "INSERT INTO school_reports (school_id, last_report) VALUES (?, ?)"
            " ON CONFLICT (school_id) DO UPDATE"
            " SET last_report = max(last_report, excluded.last_report)",
            rows.last_report.items(),
        )

    def save_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        with self._transaction("write rejects") as conn:
            conn.executemany(
                "INSERT INTO rejects (received_at, topic, reason, detail, payload_excerpt)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        _ts(r.received_at),
                        r.topic,
                        r.reason,
                        r.detail,
                        r.payload_excerpt[:REJECT_EXCERPT_CHARS],
                    )
                    for r in rejects
                ],
            )
            conn.execute(
                "DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?",
                (self.rejects_kept,),
            )

    def upsert_schools(self, schools: list[School]) -> int:
        now = time.time()
        with self._transaction("write schools") as conn:
            conn.executemany(
                "INSERT INTO schools (school_id, name, province, commune, level, lat, lon,"
                " students, computers_required, contracted_mbps, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (school_id) DO UPDATE SET name = excluded.name,"
                " province = excluded.province, commune = excluded.commune,"
                " level = excluded.level, lat = excluded.lat, lon = excluded.lon,"
                " students = excluded.students,"
                " computers_required = excluded.computers_required,"
                " contracted_mbps = excluded.contracted_mbps, updated_at = excluded.updated_at",
                [
                    (
                        s.school_id,
                        s.name,
                        s.province,
                        s.commune,
                        s.level,
                        s.lat,
                        s.lon,
                        s.students,
                        s.computers_required,
                        s.contracted_mbps,
                        now,
                    )
                    for s in schools
                ],
            )
        return len(schools)

    def prune(self, before: datetime, report_ids_before: datetime | None = None) -> int:
        ids_cutoff = _ts(before if report_ids_before is None else report_ids_before)
        with self._transaction("prune") as conn:
            deleted = 0
            for sql, cutoff in (
                ("DELETE FROM bandwidth WHERE measured_at < ?", _ts(before)),
                ("DELETE FROM heartbeat_hours WHERE hour < ?", _ts(before)),
                ("DELETE FROM report_ids WHERE received_at < ?", ids_cutoff),
            ):
                deleted += conn.execute(sql, (cutoff,)).rowcount
        return deleted

    # --- reads ---------------------------------------------------------------------------

    def recent_rejects(self, limit: int = 100) -> list[Reject]:
        rows = self._read(
            "SELECT received_at, topic, reason, detail, payload_excerpt FROM rejects"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [Reject(to_datetime(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def schools(self) -> list[School]:
        rows = self._read(
            "SELECT school_id, name, province, commune, level, lat, lon, students,"
            " computers_required, contracted_mbps FROM schools ORDER BY school_id"
        )
        return [School(*r) for r in rows]

    def reporting_school_ids(self) -> set[str]:
        return {r[0] for r in self._read("SELECT school_id FROM school_reports")}

    def last_report_per_school(self) -> dict[str, datetime]:
        rows = self._read("SELECT school_id, last_report FROM school_reports")
        return {r[0]: to_datetime(r[1]) for r in rows}

    def bandwidth_since(self, since: datetime) -> list[BandwidthRow]:
        rows = self._read(
            "SELECT school_id, device_id, measured_at, download_mbps, upload_mbps, latency_ms,"
            " error, skipped FROM bandwidth WHERE measured_at >= ? ORDER BY measured_at, id",
            (_ts(since),),
        )
        return [
            BandwidthRow(r[0], r[1], to_datetime(r[2]), r[3], r[4], r[5], r[6], bool(r[7]))
            for r in rows
        ]

    def devices(self) -> list[DeviceRow]:
        rows = self._read(
            "SELECT school_id, device_id, inventory_at, last_seen, memory_mb, cpu_cores, os_name,"
            " os_version, out_of_support, machine_kind, hardware_hash FROM devices"
            " ORDER BY school_id, device_id"
        )
        return [
            DeviceRow(
                r[0],
                r[1],
                _dt_or_none(r[2]),
                to_datetime(r[3]),
                r[4],
                r[5],
                r[6],
                r[7],
                None if r[8] is None else bool(r[8]),
                r[9],
                r[10],
            )
            for r in rows
        ]

    def heartbeat_hours_since(self, since: datetime) -> list[HeartbeatHour]:
        # include the hour that contains `since`: its sums cover part of the asked period
        start = int(_ts(since)) // 3600 * 3600
        rows = self._read(
            "SELECT school_id, hour, heartbeats, checks, checks_ok FROM heartbeat_hours"
            " WHERE hour >= ? ORDER BY school_id, hour",
            (start,),
        )
        return [HeartbeatHour(r[0], to_datetime(r[1]), r[2], r[3], r[4]) for r in rows]

    def report_count(self) -> int:
        """How many distinct reports are stored (report ids not yet pruned)."""
        return int(self._read("SELECT count(*) FROM report_ids")[0][0])

    def has_report(self, report_id: str) -> bool:
        """True once the report with this id is stored (benchmarks poll for visibility)."""
        rows = self._read("SELECT 1 FROM report_ids WHERE report_id = ?", (report_id,))
        return bool(rows)

    def close(self) -> None:
        with self._lock, self._conns_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error as e:  # closing must not hide the caller's own error
                    log.warning("closing %s: %s", self.url, e)
            self._all.clear()
