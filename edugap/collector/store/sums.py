"""The aggregate reads `evaluate` asks for (`Store.speed_tests_since` and friends), where the
SQL is the same on every backend; `heartbeat_sums` is each backend's own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from edugap.collector.model import DeviceCounts, OsRelease, SpeedTests
from edugap.collector.store.dialect import Dialect

# measured_at as the backend returns it: epoch seconds (SQLite) or a datetime (PostgreSQL)
At = TypeVar("At", float, datetime)


class CommonSums:
    """`Store.speed_tests_since`, `device_counts` and `device_os`, written once in `Dialect`
    terms."""

    dialect: Dialect

    if TYPE_CHECKING:  # CommonSql's reader, beside this class in the store's bases

        def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    def speed_tests_since(self, since: datetime) -> dict[str, SpeedTests]:
        rows = self._query(
            "SELECT school_id, download_mbps, upload_mbps, latency_ms, measured_at FROM bandwidth"
            " WHERE measured_at >= ? AND download_mbps IS NOT NULL AND error IS NULL"
            " AND NOT skipped",
            (self.dialect.time_in(since),),
        )
        failed = self._query(
            "SELECT school_id, count(*) FROM bandwidth WHERE measured_at >= ? AND NOT skipped"
            " AND (download_mbps IS NULL OR error IS NOT NULL) GROUP BY school_id",
            (self.dialect.time_in(since),),
        )
        return add_failed(group_tests(rows, self.dialect.time_out), failed)

    def device_counts(
        self, live_since: datetime, min_memory_mb: float, min_cores: int
    ) -> dict[str, DeviceCounts]:
        rows = self._query(
            "SELECT school_id, count(*),"
            " count(*) FILTER (WHERE coalesce(memory_mb, 0) >= ?"
            " AND coalesce(cpu_cores, 0) >= ?),"
            " count(*) FILTER (WHERE out_of_support), count(*) FILTER (WHERE clock_off),"
            " count(*) FILTER (WHERE speed_tester)"
            " FROM devices WHERE last_seen >= ? GROUP BY school_id",
            (min_memory_mb, min_cores, self.dialect.time_in(live_since)),
        )
        return {r[0]: DeviceCounts(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def device_os(self, live_since: datetime) -> dict[str, dict[OsRelease, int]]:
        rows = self._query(
            "SELECT school_id, coalesce(os_name, ''), coalesce(os_version, ''), count(*)"
            " FROM devices WHERE last_seen >= ? AND inventory_at IS NOT NULL"
            " GROUP BY school_id, os_name, os_version",
            (self.dialect.time_in(live_since),),
        )
        found: dict[str, dict[OsRelease, int]] = {}
        for school_id, name, version, count in rows:
            found.setdefault(school_id, {})[(name, version)] = int(count)
        return found


def group_tests(
    rows: Iterable[tuple[str, float, float | None, float | None, At]],
    to_datetime: Callable[[At], datetime],
) -> dict[str, SpeedTests]:
    """Successful tests grouped per school; a SQLite `measured_at` stays a number until the
    newest one per school is known (turning millions into datetimes was a cost to remove)."""
    tests: dict[str, SpeedTests] = {}
    newest: dict[str, At] = {}
    get = tests.get
    for school_id, down, up, latency, at in rows:
        t = get(school_id)
        if t is None:
            t = tests[school_id] = SpeedTests()
            newest[school_id] = at
        elif at > newest[school_id]:
            newest[school_id] = at
        t.down.append(down)
        if up is not None:
            t.up.append(up)
        if latency is not None:
            t.latency.append(latency)
    for school_id, at in newest.items():
        tests[school_id].newest = to_datetime(at)
    return tests


def add_failed(
    tests: dict[str, SpeedTests], failed: Iterable[tuple[str, int]]
) -> dict[str, SpeedTests]:
    """Count each school's failed tests (an error, or no download) into its SpeedTests; a
    school whose every test failed gets one with no speeds."""
    for school_id, count in failed:
        t = tests.get(school_id)
        if t is None:
            t = tests[school_id] = SpeedTests()
        t.failed = int(count)
    return tests
