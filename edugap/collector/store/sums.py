"""Backend-neutral helpers for the aggregate reads (`Store.speed_tests_since` and friends)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from edugap.collector.model import SpeedTests

# measured_at as the backend returns it: epoch seconds (SQLite) or a datetime (PostgreSQL)
At = TypeVar("At", float, datetime)


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
