"""PostgreSQL store (psycopg 3): for several collectors writing to one database.

Idempotency across collectors rests on the primary key of `report_ids` and
`INSERT ... ON CONFLICT DO NOTHING RETURNING`: a second collector inserting the same id waits
for the first one's transaction and then gets nothing back, so the report counts as a duplicate.
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
from collector.store import redact
from collector.store.collectors_sql import PostgresCollectors
from collector.store.migrations import migrations
from collector.store.postgres_sums import PostgresSums, _utc
from collector.store.prepare import (
    bounded,
    clean,
    first_occurrences,
    inventory_json,
    prepare,
    to_datetime,
)

log = logging.getLogger(__name__)

REJECTS_KEPT = 5000
# any fixed number: serialises migrations when two collectors start at the same moment
_MIGRATION_LOCK = 0x6564756761700001


class PostgresStore(PostgresSums, PostgresCollectors):
    """The PostgreSQL backend of `collector.model.Store`."""

    def __init__(self, url: str, *, rejects_kept: int = REJECTS_KEPT) -> None:
        self._dsn = url
        self.url = redact(url)
        self.rejects_kept = rejects_kept
        self._lock = threading.Lock()  # the one writer connection
        self._readers: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._writer: psycopg.Connection[Any] | None = None
        try:
            self._migrate()
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
            except (psycopg.Error, ValueError, OverflowError) as e:
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

    def save_batch(self, batch: list[Received]) -> list[bool]:
        if not batch:
            return []
        indexes, ids = first_occurrences(batch)
        clean_ids = [clean(rid) or "" for rid in ids]
        order = sorted(range(len(ids)), key=clean_ids.__getitem__)
        with self._transaction("write batch") as cur:
            cur.execute(
                "INSERT INTO report_ids (report_id, received_at)"
                " SELECT * FROM unnest(%s::text[], %s::timestamptz[])"
                " ON CONFLICT DO NOTHING RETURNING report_id",
                (
                    [clean_ids[k] for k in order],
                    [batch[indexes[k]].received_at for k in order],
                ),
            )
            inserted = {r[0] for r in cur.fetchall()}
            new_indexes = [i for i, rid in zip(indexes, clean_ids, strict=True) if rid in inserted]
            self._write_rows(cur, [batch[i] for i in new_indexes])
        stored = [False] * len(batch)
        for i in new_indexes:
            stored[i] = True
        return stored

    def _write_rows(self, cur: psycopg.Cursor[Any], new: list[Received]) -> None:
        rows = prepare(new)
        if rows.bandwidth:
            with cur.copy(
                "COPY bandwidth (report_id, school_id, device_id, measured_at, download_mbps,"
                " upload_mbps, latency_ms, error, skipped, backend, bytes_used) FROM STDIN"
            ) as copy:
                for b, _at in rows.bandwidth:
                    copy.write_row(
                        (
                            clean(b.report_id),
                            b.school_id,
                            b.device_id,
                            b.measured_at,
                            b.download_mbps,
                            b.upload_mbps,
                            b.latency_ms,
                            clean(b.error),
                            b.skipped,
                            clean(b.backend),
                            bounded(b.bytes_used),
                        )
                    )
        seen = sorted(rows.last_seen.items())
        if seen:
            cur.execute(
                "INSERT INTO devices (school_id, device_id, last_seen)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[])"
                " ON CONFLICT (school_id, device_id) DO UPDATE"
                " SET last_seen = GREATEST(devices.last_seen, excluded.last_seen)",
                (
                    [k[0] for k, _ in seen],
                    [k[1] for k, _ in seen],
                    [to_datetime(at) for _, at in seen],
                ),
            )
        if rows.inventories:
            cur.executemany(
                "UPDATE devices SET inventory_at = %s, memory_mb = %s, cpu_cores = %s,"
                " os_name = %s, os_version = %s, out_of_support = %s, machine_kind = %s,"
                " hardware_hash = %s, inventory = %s"
                " WHERE school_id = %s AND device_id = %s"
                " AND (inventory_at IS NULL OR inventory_at <= %s)",
                [
                    (
                        inv.measured_at,
                        bounded(inv.memory_mb),
                        bounded(inv.cpu.cores),
                        clean(inv.os.name),
                        clean(inv.os.version),
                        inv.os.out_of_support,
                        inv.machine_kind,
                        clean(inv.hardware_hash),
                        inventory_json(inv),
                        school,
                        device,
                        inv.measured_at,
                    )
                    for (school, device), (inv, _at) in sorted(rows.inventories.items())
                ],
            )
        hours = rows.sorted_hours()
        if hours:
            cur.execute(
                "INSERT INTO heartbeat_hours (school_id, hour, heartbeats, checks, checks_ok)"
                " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[],"
                " %s::bigint[], %s::bigint[])"
                " ON CONFLICT (school_id, hour) DO UPDATE SET"
                " heartbeats = heartbeat_hours.heartbeats + excluded.heartbeats,"
                " checks = heartbeat_hours.checks + excluded.checks,"
                " checks_ok = heartbeat_hours.checks_ok + excluded.checks_ok",
                (
                    [s for s, _, _ in hours],
                    [to_datetime(h) for _, h, _ in hours],
                    [v.heartbeats for _, _, v in hours],
                    [v.checks for _, _, v in hours],
                    [v.checks_ok for _, _, v in hours],
                ),
            )
        last = sorted(rows.last_report.items())
        if last:
            cur.execute(
                "INSERT INTO school_reports (school_id, last_report)"
                " SELECT * FROM unnest(%s::text[], %s::timestamptz[])"
                " ON CONFLICT (school_id) DO UPDATE"
                " SET last_report = GREATEST(school_reports.last_report, excluded.last_report)",
                ([s for s, _ in last], [to_datetime(at) for _, at in last]),
            )

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
            ):
                cur.execute(sql, (cutoff,))
                deleted += max(cur.rowcount, 0)
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
            " os_version, out_of_support, machine_kind, hardware_hash FROM devices"
            " ORDER BY school_id, device_id"
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
        return int(self._read("SELECT count(*) FROM report_ids")[0][0])

    def has_report(self, report_id: str) -> bool:
        """True once the report with this id is stored (benchmarks poll for visibility)."""
        rows = self._read("SELECT 1 FROM report_ids WHERE report_id = %s", (clean(report_id),))
        return bool(rows)

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
