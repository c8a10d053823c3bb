"""The PostgreSQL store's batch write: duplicate report ids, then the rows the new reports make.

Idempotency across collectors rests on the primary key of `report_ids` (measured_at, school,
id) and `INSERT ... ON CONFLICT DO NOTHING RETURNING`: a second collector inserting the same key
waits for the first one's transaction and then gets nothing back, so the report counts as a
duplicate.

Fast the way PostgreSQL is fast: every statement takes whole columns as arrays in binary
(`%b`: psycopg's text form of an array quotes each element with a regex, which cost more than
the server's work), and the statements after the id insert go in one pipeline, so the server
runs one while Python builds the next.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import psycopg

from edugap.collector.model import Received
from edugap.collector.store.prepare import (
    MAX_SUM,
    ReportKey,
    bounded,
    clean,
    first_occurrences,
    inventory_json,
    legacy_known,
    prepare,
    to_datetime,
)


class PostgresWrites:
    """`Store.save_batch` for `PostgresStore`."""

    _legacy_ids: bool

    def _transaction(self, what: str) -> AbstractContextManager[psycopg.Cursor[Any]]:
        raise NotImplementedError  # PostgresStore's one writer transaction

    def save_batch(self, batch: list[Received]) -> list[bool]:
        if not batch:
            return []
        indexes, keys = first_occurrences(batch)
        with self._transaction("write batch") as cur:
            known: set[ReportKey] = set()
            if self._legacy_ids:
                ids = [rid for _, rid in keys]
                cur.execute(
                    "SELECT school_id, report_id FROM report_ids_v2"
                    " WHERE report_id = ANY(%b::text[]) UNION ALL"
                    " SELECT NULL, report_id FROM report_ids_v1 WHERE report_id = ANY(%b::text[])",
                    (ids, ids),
                )
                known = legacy_known(keys, cur.fetchall())
            # in key order, so that two collectors inserting the same ids cannot deadlock
            fresh = sorted(
                (batch[i].measured_as_sent, key[0], key[1], batch[i].received_at)
                for i, key in zip(indexes, keys, strict=True)
                if key not in known
            )
            cur.execute(
                "INSERT INTO report_ids (measured_at, school_id, report_id, received_at)"
                " SELECT * FROM unnest(%b::timestamptz[], %b::text[], %b::text[],"
                " %b::timestamptz[]) ON CONFLICT DO NOTHING"
                " RETURNING measured_at, school_id, report_id",
                tuple(list(column) for column in zip(*fresh, strict=True)) or ([], [], [], []),
            )
            inserted = {(r[0], r[1], r[2]) for r in cur.fetchall()}
            new_indexes = [
                i
                for i, key in zip(indexes, keys, strict=True)
                if (batch[i].measured_as_sent, *key) in inserted
            ]
            with cur.connection.pipeline():
                self._write_rows(cur, [batch[i] for i in new_indexes])
        stored = [False] * len(batch)
        for i in new_indexes:
            stored[i] = True
        return stored

    def _write_rows(self, cur: psycopg.Cursor[Any], new: list[Received]) -> None:
        rows = prepare(new)
        if rows.bandwidth:
            # not COPY, which a pipeline cannot carry
            cur.execute(
                "INSERT INTO bandwidth (report_id, school_id, device_id, measured_at,"
                " download_mbps, upload_mbps, latency_ms, error, skipped, backend, bytes_used)"
                " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[],"
                " %b::float8[], %b::float8[], %b::float8[], %b::text[], %b::boolean[],"
                " %b::text[], %b::bigint[])",
                tuple(
                    list(column)
                    for column in zip(
                        *(
                            (
                                clean(b.report_id),
                                b.school_id,
                                b.device_id,
                                b.measured_at,
                                _float(b.download_mbps),
                                _float(b.upload_mbps),
                                _float(b.latency_ms),
                                clean(b.error),
                                b.skipped,
                                clean(b.backend),
                                bounded(b.bytes_used),
                            )
                            for b, _at in rows.bandwidth
                        ),
                        strict=True,
                    )
                ),
            )
        seen = sorted(rows.last_seen.items())
        if seen:
            cur.execute(
                "INSERT INTO devices (school_id, device_id, last_seen)"
                " SELECT * FROM unnest(%b::text[], %b::text[], %b::timestamptz[])"
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
                " hardware_hash = %s, inventory = %s, speed_tester = %s"
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
                        inv.speed_tester,
                        school,
                        device,
                        inv.measured_at,
                    )
                    for (school, device), (inv, _at) in sorted(rows.inventories.items())
                ],
            )
        clocks = sorted(rows.clocks.items())
        if clocks:
            cur.execute(
                "UPDATE devices d SET clock_offset_s = c.offset_s, clock_off = c.off,"
                " clock_at = c.at FROM unnest(%b::text[], %b::text[], %b::float8[],"
                " %b::boolean[], %b::timestamptz[]) AS c(school_id, device_id, offset_s, off, at)"
                " WHERE d.school_id = c.school_id AND d.device_id = c.device_id"
                " AND (d.clock_at IS NULL OR d.clock_at <= c.at)",
                (
                    [k[0] for k, _ in clocks],
                    [k[1] for k, _ in clocks],
                    [float(v[0]) for _, v in clocks],
                    [v[1] for _, v in clocks],
                    [to_datetime(v[2]) for _, v in clocks],
                ),
            )
        hours = rows.sorted_hours()
        if hours:
            # both sides are at most MAX_SUM, so the sum cannot overflow before it saturates
            cur.execute(
                "INSERT INTO heartbeat_hours (school_id, hour, heartbeats, checks, checks_ok)"
                " SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::bigint[],"
                " %b::bigint[], %b::bigint[])"
                " ON CONFLICT (school_id, hour) DO UPDATE SET"
                f" heartbeats = least(heartbeat_hours.heartbeats + excluded.heartbeats, {MAX_SUM}),"
                f" checks = least(heartbeat_hours.checks + excluded.checks, {MAX_SUM}),"
                f" checks_ok = least(heartbeat_hours.checks_ok + excluded.checks_ok, {MAX_SUM})",
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
                " SELECT * FROM unnest(%b::text[], %b::timestamptz[])"
                " ON CONFLICT (school_id) DO UPDATE"
                " SET last_report = GREATEST(school_reports.last_report, excluded.last_report)",
                ([s for s, _ in last], [to_datetime(at) for _, at in last]),
            )


def _float(x: float | None) -> float | None:
    # one int among floats would make psycopg pick an integer array for the whole column
    return None if x is None else float(x)
