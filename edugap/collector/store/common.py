"""What both SQL backends write and read the same way, written once in `Dialect` terms.

The registry upsert, rejects, pruning and the row reads are the same statements on SQLite and
PostgreSQL but for the parameter marker, how a time is stored and which text a column holds
(see dialect.py). A backend mixes `CommonSql` in and supplies `dialect`, `_read` and
`_transaction`; what is really its own (the batch write, the heartbeat sums, connections,
migrations) stays in its module.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from edugap.collector.model import (
    REJECT_EXCERPT_CHARS,
    BandwidthRow,
    DeviceRow,
    HeartbeatHour,
    Reject,
    School,
)
from edugap.collector.store.dialect import Dialect
from edugap.collector.store.prepare import clean


class CommonSql:
    """`Store` methods whose SQL is the same on every backend."""

    dialect: Dialect
    rejects_kept: int
    _legacy_ids: bool

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError  # the store's pooled reader

    def _transaction(self, what: str) -> AbstractContextManager[Any]:
        raise NotImplementedError  # the store's writer: yields something with execute()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._read(self.dialect.sql(sql), params)

    def _has_legacy_ids(self, tx: Any) -> bool:
        # report ids stored before migration 0002 (global, not per school) or 0005 (per
        # school, keyed on the id), until pruned
        row = tx.execute(
            "SELECT EXISTS (SELECT 1 FROM report_ids_v1) OR EXISTS (SELECT 1 FROM report_ids_v2)"
        ).fetchone()
        return bool(row and row[0])

    def schema_version(self) -> int:
        """The highest migration applied."""
        return int(self._query("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    # --- writes --------------------------------------------------------------------------

    def save_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        d = self.dialect
        with self._transaction("write rejects") as tx:
            tx.executemany(
                d.sql(
                    "INSERT INTO rejects (received_at, topic, reason, detail, payload_excerpt)"
                    " VALUES (?, ?, ?, ?, ?)"
                ),
                [
                    (
                        d.time_in(r.received_at),
                        d.text(r.topic),
                        d.text(r.reason),
                        d.text(r.detail),
                        d.text(r.payload_excerpt[:REJECT_EXCERPT_CHARS]),
                    )
                    for r in rejects
                ],
            )
            tx.execute(
                d.sql("DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?"),
                (self.rejects_kept,),
            )

    def upsert_schools(self, schools: list[School]) -> int:
        d = self.dialect
        now = d.time_in(datetime.now(UTC))
        with self._transaction("write schools") as tx:
            tx.executemany(
                d.sql(
                    "INSERT INTO schools (school_id, name, province, commune, level, lat, lon,"
                    " students, computers_required, contracted_mbps, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (school_id) DO UPDATE SET name = excluded.name,"
                    " province = excluded.province, commune = excluded.commune,"
                    " level = excluded.level, lat = excluded.lat, lon = excluded.lon,"
                    " students = excluded.students,"
                    " computers_required = excluded.computers_required,"
                    " contracted_mbps = excluded.contracted_mbps,"
                    " updated_at = excluded.updated_at"
                ),
                # in key order, so that two writers of one registry cannot deadlock
                [
                    (
                        s.school_id,
                        d.text(s.name),
                        d.text(s.province),
                        d.text(s.commune),
                        d.text(s.level),
                        s.lat,
                        s.lon,
                        s.students,
                        s.computers_required,
                        s.contracted_mbps,
                        now,
                    )
                    for s in sorted(schools, key=lambda s: s.school_id)
                ],
            )
        return len(schools)

    def prune(self, before: datetime, report_ids_before: datetime | None = None) -> int:
        d = self.dialect
        cutoff = d.time_in(before)
        ids_cutoff = d.time_in(before if report_ids_before is None else report_ids_before)
        deleted = 0
        with self._transaction("prune") as tx:
            for sql, at in (
                ("DELETE FROM bandwidth WHERE measured_at < ?", cutoff),
                ("DELETE FROM heartbeat_hours WHERE hour < ?", cutoff),
                ("DELETE FROM report_ids WHERE received_at < ?", ids_cutoff),
                ("DELETE FROM report_ids_v1 WHERE received_at < ?", ids_cutoff),
                ("DELETE FROM report_ids_v2 WHERE received_at < ?", ids_cutoff),
            ):
                deleted += max(tx.execute(d.sql(sql), (at,)).rowcount, 0)
            self._legacy_ids = self._has_legacy_ids(tx)
        return deleted

    # --- reads ---------------------------------------------------------------------------

    def recent_rejects(self, limit: int = 100) -> list[Reject]:
        rows = self._query(
            "SELECT received_at, topic, reason, detail, payload_excerpt FROM rejects"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        time_out = self.dialect.time_out
        return [Reject(time_out(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def schools(self) -> list[School]:
        rows = self._query(
            "SELECT school_id, name, province, commune, level, lat, lon, students,"
            " computers_required, contracted_mbps FROM schools ORDER BY school_id"
        )
        return [School(*r) for r in rows]

    def reporting_school_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT school_id FROM school_reports")}

    def last_report_per_school(self) -> dict[str, datetime]:
        time_out = self.dialect.time_out
        rows = self._query("SELECT school_id, last_report FROM school_reports")
        return {r[0]: time_out(r[1]) for r in rows}

    def bandwidth_since(self, since: datetime) -> list[BandwidthRow]:
        rows = self._query(
            "SELECT school_id, device_id, measured_at, download_mbps, upload_mbps, latency_ms,"
            " error, skipped FROM bandwidth WHERE measured_at >= ? ORDER BY measured_at, id",
            (self.dialect.time_in(since),),
        )
        time_out = self.dialect.time_out
        return [
            BandwidthRow(r[0], r[1], time_out(r[2]), r[3], r[4], r[5], r[6], bool(r[7]))
            for r in rows
        ]

    def devices(self) -> list[DeviceRow]:
        rows = self._query(
            "SELECT school_id, device_id, inventory_at, last_seen, memory_mb, cpu_cores, os_name,"
            " os_version, out_of_support, machine_kind, hardware_hash, clock_off, speed_tester"
            " FROM devices ORDER BY school_id, device_id"
        )
        time_out = self.dialect.time_out
        return [
            DeviceRow(
                r[0],
                r[1],
                None if r[2] is None else time_out(r[2]),
                time_out(r[3]),
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
        start = datetime.fromtimestamp(int(since.timestamp()) // 3600 * 3600, UTC)
        rows = self._query(
            "SELECT school_id, hour, heartbeats, checks, checks_ok FROM heartbeat_hours"
            " WHERE hour >= ? ORDER BY school_id, hour",
            (self.dialect.time_in(start),),
        )
        time_out = self.dialect.time_out
        return [HeartbeatHour(r[0], time_out(r[1]), r[2], r[3], r[4]) for r in rows]

    def report_count(self) -> int:
        """How many distinct reports are stored (report ids not yet pruned)."""
        rows = self._query(
            "SELECT (SELECT count(*) FROM report_ids) + (SELECT count(*) FROM report_ids_v1)"
            " + (SELECT count(*) FROM report_ids_v2)"
        )
        return int(rows[0][0])

    def has_report(self, school_id: str, report_id: str) -> bool:
        """True once this school's report with this id is stored (a scan: for tests)."""
        rows = self._query(
            "SELECT 1 FROM report_ids WHERE school_id = ? AND report_id = ?",
            (school_id, clean(report_id)),
        )
        return bool(rows)
