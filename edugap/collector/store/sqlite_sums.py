"""The SQLite store's own aggregate read: the heartbeat sums per school (the other sums are
the same SQL on every backend, in sums.py)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from edugap.collector.store.sums import CommonSums


class SqliteSums(CommonSums):
    """`Store.speed_tests_since`, `device_counts` and `heartbeat_sums` for `SqliteStore`."""

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError  # SqliteStore's pooled reader

    def heartbeat_sums(self, hours: Collection[datetime]) -> dict[str, tuple[int, int]]:
        if not hours:
            return {}
        starts = sorted(int(h.timestamp()) for h in hours)
        # School by school, a primary-key range over the window: only the window's rows are
        # read, in storage order, however long the retention. (Through the hour index the same
        # sums took 3x as long: a key lookup per row, then a sort to group.) The hours travel
        # as one JSON parameter, so their number meets no limit on bound parameters.
        rows = self._read(
            "SELECT r.school_id, sum(min(h.checks_ok, h.checks)), sum(h.checks)"
            " FROM school_reports r CROSS JOIN heartbeat_hours h"
            " ON h.school_id = r.school_id AND h.hour >= ? AND h.hour <= ?"
            " WHERE h.hour IN (SELECT value FROM json_each(?)) AND h.checks > 0"
            " GROUP BY r.school_id",
            (starts[0], starts[-1], json.dumps(starts)),
        )
        return {r[0]: (r[1], r[2]) for r in rows}
