"""The PostgreSQL store's aggregate reads: the database sums and counts per school for
`evaluate`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from edugap.collector.model import DeviceCounts, SpeedTests
from edugap.collector.store.sums import add_failed, group_tests


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class PostgresSums:
    """`Store.speed_tests_since`, `device_counts` and `heartbeat_sums` for `PostgresStore`."""

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # PostgresStore's pooled reader

    def speed_tests_since(self, since: datetime) -> dict[str, SpeedTests]:
        rows = self._read(
            "SELECT school_id, download_mbps, upload_mbps, latency_ms, measured_at FROM bandwidth"
            " WHERE measured_at >= %s AND download_mbps IS NOT NULL AND error IS NULL"
            " AND NOT skipped",
            (since,),
        )
        failed = self._read(
            "SELECT school_id, count(*) FROM bandwidth WHERE measured_at >= %s AND NOT skipped"
            " AND (download_mbps IS NULL OR error IS NOT NULL) GROUP BY school_id",
            (since,),
        )
        return add_failed(group_tests(rows, _utc), failed)

    def device_counts(
        self, live_since: datetime, min_memory_mb: float, min_cores: int
    ) -> dict[str, DeviceCounts]:
        rows = self._read(
            "SELECT school_id, count(*),"
            " count(*) FILTER (WHERE coalesce(memory_mb, 0) >= %s"
            " AND coalesce(cpu_cores, 0) >= %s),"
            " count(*) FILTER (WHERE out_of_support), count(*) FILTER (WHERE clock_off),"
            " count(*) FILTER (WHERE speed_tester)"
            " FROM devices WHERE last_seen >= %s GROUP BY school_id",
            (min_memory_mb, min_cores, live_since),
        )
        return {r[0]: DeviceCounts(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def heartbeat_sums(self, hours: Collection[datetime]) -> dict[str, tuple[int, int]]:
        rows = self._read(
            "SELECT school_id, sum(least(checks_ok, checks)), sum(checks) FROM heartbeat_hours"
            " WHERE hour = ANY(%s::timestamptz[]) AND checks > 0 GROUP BY school_id",
            (sorted(hours),),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
