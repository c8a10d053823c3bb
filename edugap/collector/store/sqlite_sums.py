"""The SQLite store's aggregate reads: the database sums and counts per school for `evaluate`."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from edugap.collector.model import DeviceCounts, SpeedTests
from edugap.collector.store.prepare import to_datetime
from edugap.collector.store.sums import add_failed, group_tests


def _ts(moment: datetime) -> float:
    return moment.timestamp()


class SqliteSums:
    """`Store.speed_tests_since`, `device_counts` and `heartbeat_sums` for `SqliteStore`."""

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError  # SqliteStore's pooled reader

    def speed_tests_since(self, since: datetime) -> dict[str, SpeedTests]:
        rows = self._read(
            "SELECT school_id, download_mbps, upload_mbps, latency_ms, measured_at FROM bandwidth"
            " WHERE measured_at >= ? AND download_mbps IS NOT NULL AND error IS NULL"
            " AND skipped = 0",
            (_ts(since),),
        )
        failed = self._read(
            "SELECT school_id, count(*) FROM bandwidth WHERE measured_at >= ? AND skipped = 0"
            " AND (download_mbps IS NULL OR error IS NOT NULL) GROUP BY school_id",
            (_ts(since),),
        )
        return add_failed(group_tests(rows, to_datetime), failed)

    def device_counts(
        self, live_since: datetime, min_memory_mb: float, min_cores: int
    ) -> dict[str, DeviceCounts]:
        rows = self._read(
            "SELECT school_id, count(*),"
            " sum(coalesce(memory_mb, 0) >= ? AND coalesce(cpu_cores, 0) >= ?),"
            " sum(coalesce(out_of_support, 0) != 0), sum(clock_off != 0),"
            " sum(coalesce(speed_tester, 0) != 0)"
            " FROM devices WHERE last_seen >= ? GROUP BY school_id",
            (min_memory_mb, min_cores, _ts(live_since)),
        )
        return {r[0]: DeviceCounts(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def heartbeat_sums(self, hours: Collection[datetime]) -> dict[str, tuple[int, int]]:
        if not hours:
            return {}
        starts = sorted(int(_ts(h)) for h in hours)
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
