"""PostgreSQL store (psycopg 3): for several collectors writing to one database.

Idempotency across collectors rests on the primary key of `report_ids` (see postgres_writes).
Upserts are sent in key order so that two collectors' batches cannot deadlock each other.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

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
from edugap.collector.store import redact
from edugap.collector.store.collectors_sql import PostgresCollectors
from edugap.collector.store.migrations import migrations
from edugap.collector.store.postgres_sums import PostgresSums, _utc
from edugap.collector.store.postgres_writes import PostgresWrites
from edugap.collector.store.prepare import clean

log = logging.getLogger(__name__)

REJECTS_KEPT = 5000
# any fixed number: serialises migrations when two collectors start at the same moment
_MIGRATION_LOCK = 0x6564756761700001
# Errors about a value in the batch: SQLSTATE class 22 (data exception: out of range, bad
# encoding) and 23 (integrity constraint), and what Python raises converting a value. The same
# batch fails again however often it is retried. Everything else (connection lost, disk full,
# server shutting down) is about the store.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, ValueError, OverflowError)


class PostgresStore(PostgresWrites, PostgresSums, PostgresCollectors):
    """The PostgreSQL backend of `edugap.collector.model.Store`."""

    def __init__(self, url: str, *, rejects_kept: int = REJECTS_KEPT) -> None:
        self._dsn = url
        self.url = redact(url)
        self.rejects_kept = rejects_kept
        self._lock = threading.Lock()  # the one writer connection
        self._readers: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._writer: psycopg.Connection[Any] | None = None
        try:
            self._migrate()
            with self._transaction("read legacy report ids") as cur:
                self._legacy_ids = self._has_legacy_ids(cur)
        except psycopg.Error as e:
            raise StoreError(f"cannot open PostgreSQL store {self.url}: {e}") from e

    # --- connections ---------------------------------------------------------------------

    def _connect(self, autocommit: bool) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=autocommit, connect_timeout=10)
        conn.execute("SET TIME ZONE 'UTC'")
        if not autocommit:
            conn.commit()
        return conn

    def _writer_conn(self) -> psycopg.Connection[Any]:
        # a connection broken by a server restart is replaced on the next write
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            self._writer = self._connect(autocommit=False)
        return self._writer

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            try:
                conn = self._writer_conn()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except _DATA_ERRORS as e:
                raise StoreDataError(f"cannot {what} to {self.url}: {e}") from e
            except psycopg.Error as e:
                raise StoreError(f"cannot {what} to {self.url}: {e}") from e

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = None
        try:
            if conn is None or conn.closed or conn.broken:
                conn = self._connect(autocommit=True)
            rows = conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot read from {self.url}: {e}") from e
        self._readers.put(conn)
        return rows

    def _migrate(self) -> None:
        with self._transaction("migrate") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_version")
            done = {r[0] for r in cur.fetchall()}
            for version, name, sql in migrations("postgres"):
                if version in done:
                    continue
                log.info("applying PostgreSQL migration %s to %s", name, self.url)
                cur.execute(sql.encode())  # several statements, no parameters
                cur.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name)
                )

    def schema_version(self) -> int:
        """The highest migration applied."""
        return int(self._read("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    # --- writes --------------------------------------------------------------------------

    def save_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        with self._transaction("write rejects") as cur:
            cur.executemany(
                "INSERT INTO rejects (received_at, topic, reason, detail, payload_excerpt)"
                " VALUES (%s, %s, %s, %s, %s)",
                [
                    (
                        r.received_at,
                        clean(r.topic),
                        clean(r.reason),
                        clean(r.detail),
                        clean(r.payload_excerpt[:REJECT_EXCERPT_CHARS]),
                    )
                    for r in rejects
                ],
            )
            cur.execute(
                "DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - %s",
                (self.rejects_kept,),
            )

    def upsert_schools(self, schools: list[School]) -> int:
        with self._transaction("write schools") as cur:
            cur.executemany(
                "INSERT INTO schools (school_id, name, province, commune, level, lat, lon,"
                " students, computers_required, contracted_mbps, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                " ON CONFLICT (school_id) DO UPDATE SET name = excluded.name,"
                " province = excluded.province, commune = excluded.commune,"
                " level = excluded.level, lat = excluded.lat, lon = excluded.lon,"
                " students = excluded.students,"
                " computers_required = excluded.computers_required,"
                " contracted_mbps = excluded.contracted_mbps, updated_at = now()",
                [
                    (
                        s.school_id,
                        clean(s.name),
                        clean(s.province),
                        clean(s.commune),
                        clean(s.level),
                        s.lat,
                        s.lon,
                        s.students,
                        s.computers_required,
                        s.contracted_mbps,
                    )
                    for s in sorted(schools, key=lambda s: s.school_id)
                ],
            )
        return len(schools)

    def prune(self, before: datetime, report_ids_before: datetime | None = None) -> int:
        deleted = 0
        with self._transaction("prune") as cur:
            for sql, cutoff in (
                ("DELETE FROM bandwidth WHERE measured_at < %s", before),
                ("DELETE FROM heartbeat_hours WHERE hour < %s", before),
                ("DELETE FROM report_ids WHERE received_at < %s", report_ids_before or before),
                ("DELETE FROM report_ids_v1 WHERE received_at < %s", report_ids_before or before),
            ):
                cur.execute(sql, (cutoff,))
                deleted += max(cur.rowcount, 0)
            self._legacy_ids = self._has_legacy_ids(cur)
        return deleted

    # --- reads ---------------------------------------------------------------------------

    def recent_rejects(self, limit: int = 100) -> list[Reject]:
        rows = self._read(
            "SELECT received_at, topic, reason, detail, payload_excerpt FROM rejects"
            " ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [Reject(*r) for r in rows]

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
        return {r[0]: _utc(r[1]) for r in rows}

    def bandwidth_since(self, since: datetime) -> list[BandwidthRow]:
        rows = self._read(
            "SELECT school_id, device_id, measured_at, download_mbps, upload_mbps, latency_ms,"
            " error, skipped FROM bandwidth WHERE measured_at >= %s ORDER BY measured_at, id",
            (since,),
        )
        return [BandwidthRow(r[0], r[1], _utc(r[2]), *r[3:]) for r in rows]

    def devices(self) -> list[DeviceRow]:
        rows = self._read(
            "SELECT school_id, device_id, inventory_at, last_seen, memory_mb, cpu_cores, os_name,"
            " os_version, out_of_support, machine_kind, hardware_hash, clock_off, speed_tester"
            " FROM devices ORDER BY school_id, device_id"
        )
        return [
            DeviceRow(r[0], r[1], None if r[2] is None else _utc(r[2]), _utc(r[3]), *r[4:])
            for r in rows
        ]

    def heartbeat_hours_since(self, since: datetime) -> list[HeartbeatHour]:
        rows = self._read(
            "SELECT school_id, hour, heartbeats, checks, checks_ok FROM heartbeat_hours"
            " WHERE hour >= date_trunc('hour', %s::timestamptz) ORDER BY school_id, hour",
            (since,),
        )
        return [HeartbeatHour(r[0], _utc(r[1]), r[2], r[3], r[4]) for r in rows]

    def report_count(self) -> int:
        """How many distinct reports are stored (report ids not yet pruned)."""
        rows = self._read(
            "SELECT (SELECT count(*) FROM report_ids) + (SELECT count(*) FROM report_ids_v1)"
        )
        return int(rows[0][0])

    def has_report(self, school_id: str, report_id: str) -> bool:
        """True once this school's report with this id is stored (benchmarks poll for it)."""
        rows = self._read(
            "SELECT 1 FROM report_ids WHERE school_id = %s AND report_id = %s",
            (school_id, clean(report_id)),
        )
        return bool(rows)

    def unwritable(self) -> str | None:
        # the server's disk is out of sight: a full one fails the writer's batches, which
        # readiness sees through Ingest.failing_for()
        return None

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
