"""The SQLite store's batch write: duplicate report ids, then the rows the new reports make."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from edugap.collector.model import Received
from edugap.collector.store.dialect import epoch
from edugap.collector.store.prepare import (
    MAX_SUM,
    ReportKey,
    bounded,
    clean,
    first_occurrences,
    inventory_json,
    legacy_known,
    prepare,
)

# SQLite before 3.32 allows 999 bound parameters per statement; stay below it.
_CHUNK = 900


class SqliteWrites:
    """`Store.save_batch` for `SqliteStore`."""

    _writer: sqlite3.Connection
    _legacy_ids: bool

    def _transaction(self, what: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # SqliteStore's one writer transaction

    def save_batch(self, batch: list[Received]) -> list[bool]:
        if not batch:
            return []
        indexes, keys = first_occurrences(batch)
        stored = [False] * len(batch)
        times = [epoch(batch[i].measured_as_sent) for i in indexes]
        with self._transaction("write batch") as conn:
            # the measured time leads the key: look the batch's times up, match school and id
            sql = "SELECT measured_at, school_id, report_id FROM report_ids WHERE measured_at IN"
            rows = set(_select_in(conn, sql, list(set(times))))
            legacy: set[ReportKey] = set()
            if self._legacy_ids:  # ids stored before migrations 0002 and 0005
                ids = list({rid for _, rid in keys})
                found = list(_select_in(conn, _LEGACY, ids, repeat=2))
                legacy = legacy_known(keys, found)
            fresh = [
                (i, key, at)
                for i, key, at in zip(indexes, keys, times, strict=True)
                if (at, *key) not in rows and key not in legacy
            ]
            conn.executemany(
                "INSERT INTO report_ids (measured_at, school_id, report_id, received_at)"
                " VALUES (?, ?, ?, ?)",
                [(at, school, rid, epoch(batch[i].received_at)) for i, (school, rid), at in fresh],
            )
            new_indexes = [i for i, _, _ in fresh]
            self._write_rows(conn, [batch[i] for i in new_indexes])
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
            " inventory = ?, speed_tester = ?"
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
                    None if inv.speed_tester is None else int(inv.speed_tester),
                    school,
                    device,
                    at,
                )
                for (school, device), (inv, at) in rows.inventories.items()
            ],
        )
        conn.executemany(
            "UPDATE devices SET clock_offset_s = ?, clock_off = ?, clock_at = ?"
            " WHERE school_id = ? AND device_id = ? AND (clock_at IS NULL OR clock_at <= ?)",
            [
                (offset, int(off), at, school, device, at)
                for (school, device), (offset, off, at) in rows.clocks.items()
            ],
        )
        # both sides are at most MAX_SUM, so the sum cannot overflow before it saturates
        conn.executemany(
            "INSERT INTO heartbeat_hours (school_id, hour, heartbeats, checks, checks_ok)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (school_id, hour) DO UPDATE SET"
            f" heartbeats = min(heartbeats + excluded.heartbeats, {MAX_SUM}),"
            f" checks = min(checks + excluded.checks, {MAX_SUM}),"
            f" checks_ok = min(checks_ok + excluded.checks_ok, {MAX_SUM})",
            [(s, h, v.heartbeats, v.checks, v.checks_ok) for (s, h), v in rows.hours.items()],
        )
        conn.executemany(
            "INSERT INTO school_reports (school_id, last_report) VALUES (?, ?)"
            " ON CONFLICT (school_id) DO UPDATE"
            " SET last_report = max(last_report, excluded.last_report)",
            rows.last_report.items(),
        )


_LEGACY = (
    "SELECT school_id, report_id FROM report_ids_v2 WHERE report_id IN ({marks})"
    " UNION ALL SELECT NULL, report_id FROM report_ids_v1 WHERE report_id IN ({marks})"
)


def _select_in(
    conn: sqlite3.Connection, sql: str, values: list[Any], repeat: int = 1
) -> Iterator[tuple[Any, ...]]:
    """Rows of `sql` + " (?, ?, ...)" over `values`, in chunks below the parameter limit; with
    `repeat`, `sql` holds `{marks}` that many times, each bound to the chunk."""
    size = _CHUNK // repeat
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        marks = ",".join("?" * len(chunk))
        if repeat == 1:
            yield from conn.execute(f"{sql} ({marks})", chunk)
        else:
            yield from conn.execute(sql.format(marks=marks), chunk * repeat)
