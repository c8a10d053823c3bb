"""The `collectors` table (migration 0003) of both backends: `collectors.CollectorRegistry`.

The SQL is the same for SQLite and PostgreSQL (times are epoch seconds in both); only the
parameter marker differs (`Dialect.sql`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from edugap.collector.collectors import CollectorEntry, new_share_name
from edugap.collector.store.dialect import Dialect

_COLUMNS = (
    "group_name, name, shared, client_id_hash, broker, host, pid, state, started_at,"
    " last_seen_at, state_at"
)


class CollectorsSql:
    """Registry methods on a store; the store names its `dialect`."""

    dialect: Dialect

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError  # the store's pooled reader

    def _transaction(self, what: str) -> AbstractContextManager[Any]:
        raise NotImplementedError  # the store's writer: yields something with execute()

    def _sql(self, sql: str) -> str:
        return self.dialect.sql(sql)

    def register_collector(self, entry: CollectorEntry) -> CollectorEntry | None:
        row = (
            entry.group, entry.name, entry.shared, entry.client_id_hash, entry.broker,
            entry.host, entry.pid, entry.state, entry.started_at, entry.last_seen_at,
            entry.state_at,
        )  # fmt: skip
        with self._transaction("record a collector") as tx:
            before = tx.execute(
                self._sql(f"SELECT {_COLUMNS} FROM collectors WHERE group_name = ? AND name = ?"),
                (entry.group, entry.name),
            ).fetchone()
            tx.execute(
                self._sql(
                    f"INSERT INTO collectors ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (group_name, name) DO UPDATE SET shared = excluded.shared,"
                    " client_id_hash = excluded.client_id_hash, broker = excluded.broker,"
                    " host = excluded.host, pid = excluded.pid, state = excluded.state,"
                    " started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,"
                    " state_at = excluded.state_at"
                ),
                row,
            )
        return None if before is None else _entry(before)

    def touch_collector(self, group: str, name: str, at: float) -> None:
        with self._transaction("update a collector") as tx:
            tx.execute(
                self._sql(
                    "UPDATE collectors SET last_seen_at = ? WHERE group_name = ? AND name = ?"
                ),
                (at, group, name),
            )

    def set_collector_state(self, group: str, name: str, state: str, at: float) -> None:
        with self._transaction("update a collector") as tx:
            tx.execute(
                self._sql(
                    "UPDATE collectors SET state = ?, state_at = ?"
                    " WHERE group_name = ? AND name = ?"
                ),
                (state, at, group, name),
            )

    def share_name(self, group: str) -> str:
        with self._transaction("record a collector group") as tx:
            tx.execute(
                self._sql(
                    "INSERT INTO collector_groups (group_name, share_name, created_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (group_name) DO NOTHING"
                ),
                (group, new_share_name(group), time.time()),
            )
            row = tx.execute(
                self._sql("SELECT share_name FROM collector_groups WHERE group_name = ?"), (group,)
            ).fetchone()
        return str(row[0])

    def collectors(self) -> list[CollectorEntry]:
        return [_entry(r) for r in self._read(f"SELECT {_COLUMNS} FROM collectors ORDER BY 1, 2")]


def _entry(row: Any) -> CollectorEntry:
    group, name, shared, fp, broker, host, pid, state, started, seen, state_at = row
    return CollectorEntry(
        group, name, bool(shared), fp, broker, host, int(pid), state, float(started),
        float(seen), float(state_at),
    )  # fmt: skip
