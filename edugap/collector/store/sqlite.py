"""SQLite store: one writer connection behind a lock, readers on their own pooled connections.

WAL lets readers (HTTP, policy) run while the ingest writer commits. synchronous=FULL: with
WAL this fsyncs the log once per commit, i.e. once per batch of up to a few thousand reports,
which is cheap; NORMAL could lose the last commits on power loss *after* ingest acknowledged
them to the broker, and the broker would then never redeliver them.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from edugap.collector.model import (
    REJECT_EXCERPT_CHARS,
    BandwidthRow,
    DeviceRow,
    HeartbeatHour,
    Reject,
    School,
    StoreDataError,
    StoreError,
)
from edugap.collector.store import sqlite_path
from edugap.collector.store.collectors_sql import SqliteCollectors
from edugap.collector.store.migrations import migrations, statements
from edugap.collector.store.prepare import clean, to_datetime
from edugap.collector.store.sqlite_sums import SqliteSums, _ts
from edugap.collector.store.sqlite_writes import SqliteWrites

log = logging.getLogger(__name__)

#: Rejects kept; older ones are deleted as new ones arrive.
REJECTS_KEPT = 5000
#: Below this much free space beside the database the store counts as unwritable (/readyz):
#: a batch of a few thousand reports grows the log by a few MiB.
MIN_FREE_BYTES = 16 * 2**20
#: Log pages (4 KiB each by default) between automatic checkpoints; SQLite's default is 1000.
WAL_CHECKPOINT_PAGES = 10000
# Errors about a value in the batch (an int too large to bind, text that cannot be encoded, a
# constraint, a time Python cannot convert): the same batch would fail again however often it
# is retried. Everything else (locked, disk full, I/O) is about the store.
_DATA_ERRORS = (
    ValueError,
    OverflowError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
)


def _dt_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else to_datetime(ts)


class SqliteStore(SqliteWrites, SqliteSums, SqliteCollectors):
    """The SQLite backend of `edugap.collector.model.Store`."""

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
            self._legacy_ids = self._has_legacy_ids()
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
            except _DATA_ERRORS as e:
                raise StoreDataError(f"cannot {what} to {self.url}: {e}") from e
            except sqlite3.Error as e:
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
                ("DELETE FROM report_ids_v1 WHERE received_at < ?", ids_cutoff),
            ):
                deleted += conn.execute(sql, (cutoff,)).rowcount
            self._legacy_ids = self._has_legacy_ids()
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
            " os_version, out_of_support, machine_kind, hardware_hash, clock_off, speed_tester"
            " FROM devices ORDER BY school_id, device_id"
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
                bool(r[11]),
                None if r[12] is None else bool(r[12]),
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
        rows = self._read(
            "SELECT (SELECT count(*) FROM report_ids) + (SELECT count(*) FROM report_ids_v1)"
        )
        return int(rows[0][0])

    def has_report(self, school_id: str, report_id: str) -> bool:
        """True once this school's report with this id is stored (benchmarks poll for it)."""
        rows = self._read(
            "SELECT 1 FROM report_ids WHERE school_id = ? AND report_id = ?",
            (school_id, clean(report_id)),
        )
        return bool(rows)

    def unwritable(self) -> str | None:
        try:
            free = shutil.disk_usage(Path(self.path).parent).free
        except OSError as e:
            return f"cannot see the free space of {self.path}: {e}"
        if free < MIN_FREE_BYTES:
            return f"{free} bytes free beside {self.path}, below {MIN_FREE_BYTES}"
        return None

    def close(self) -> None:
        with self._lock, self._conns_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error as e:  # closing must not hide the caller's own error
                    log.warning("closing %s: %s", self.url, e)
            self._all.clear()
