"""The PostgreSQL store's own aggregate read: the heartbeat sums per school (the other sums
are the same SQL on every backend, in sums.py)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from edugap.collector.store.sums import CommonSums


class PostgresSums(CommonSums):
    """`Store.speed_tests_since`, `device_counts` and `heartbeat_sums` for `PostgresStore`."""

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # PostgresStore's pooled reader

    def heartbeat_sums(self, hours: Collection[datetime]) -> dict[str, tuple[int, int]]:
        rows = self._read(
            "SELECT school_id, sum(least(checks_ok, checks)), sum(checks) FROM heartbeat_hours"
            " WHERE hour = ANY(%s::timestamptz[]) AND checks > 0 GROUP BY school_id",
            (sorted(hours),),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
