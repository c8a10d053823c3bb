"""Duplicate detection on both backends: report ids keyed by the time the report was measured.

The store keys each id on (measured_at as the agent sent it, school, id), so that new keys go to
the end of the index and a store holding a full window of ids writes as fast as an empty one
(bench/ingest.py). What a user relies on stays: a redelivery is a duplicate however late it
comes and whatever ingest did to its time, pruning keeps every id inside the window, and an
upgrade keeps the ids already stored.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from edugap.collector.ingest.clocks import assess
from edugap.collector.model import Store
from edugap.collector.store import open_store, scheme_of, sqlite_path
from edugap.collector.store.migrations import migrations, statements
from tests.collector.reports import T0, bandwidth, heartbeat, received


@pytest.fixture
def store(db_url: str) -> Store:
    s = open_store(db_url)
    yield s  # type: ignore[misc]
    s.close()


def test_a_redelivery_days_and_batches_later_is_still_a_duplicate(store: Store) -> None:
    first = bandwidth(at=T0 - timedelta(hours=1))
    assert store.save_batch([received(first, at=T0)]) == [True]
    # days of other reports in between, measured later than the first
    for day in range(1, 4):
        at = T0 + timedelta(days=day)
        assert all(store.save_batch([received(heartbeat(at=at), at=at) for _ in range(50)]))
    # an agent's outbox resends it three days later, in a batch with a new report
    late = T0 + timedelta(days=3, hours=1)
    assert store.save_batch([received(first, at=late), received(bandwidth(at=late), at=late)]) == [
        False,
        True,
    ]
    assert len(store.bandwidth_since(T0 - timedelta(days=1))) == 2


def test_a_report_whose_time_ingest_clamped_is_a_duplicate_on_redelivery(store: Store) -> None:
    # an agent whose clock is a year ahead: ingest clamps measured_at to the receive time,
    # which differs on every delivery; the id's key keeps the time as sent
    ahead = bandwidth(at=T0 + timedelta(days=365))
    one, _ = assess(ahead, False, T0, 300.0)
    two, _ = assess(ahead, False, T0 + timedelta(minutes=5), 300.0)
    assert one.report.measured_at != two.report.measured_at
    assert store.save_batch([one]) == [True]
    assert store.save_batch([two]) == [False]
    assert store.report_count() == 1  # type: ignore[attr-defined]


def test_one_id_with_two_measured_times_is_two_reports_in_a_batch_as_across_batches(
    store: Store,
) -> None:
    # a report is (school, id, measured time as sent): whether the two arrive together or
    # apart, each is stored once, and their redeliveries are duplicates, never a second row
    a = bandwidth(at=T0, report_id="same-id")
    b = bandwidth(at=T0 + timedelta(minutes=1), report_id="same-id")
    assert store.save_batch([received(a, at=T0), received(b, at=T0), received(a, at=T0)]) == [
        True,
        True,
        False,
    ]
    c = bandwidth(at=T0 + timedelta(minutes=2), report_id="same-id")
    later = T0 + timedelta(minutes=3)
    assert store.save_batch([received(b, at=later), received(c, at=later)]) == [False, True]
    assert store.report_count() == 3  # type: ignore[attr-defined]
    assert len(store.bandwidth_since(T0 - timedelta(days=1))) == 3


def test_pruning_keeps_every_id_received_inside_the_window(store: Store) -> None:
    # measured 20 days ago but received now (an outbox that waited out a long outage): its id
    # is kept for the window after it arrived, like any other
    delayed = bandwidth(at=T0 - timedelta(days=20))
    fresh = bandwidth(at=T0)
    gone = bandwidth(at=T0 - timedelta(days=20))
    store.save_batch([received(gone, at=T0 - timedelta(days=20))])
    store.save_batch([received(delayed, at=T0), received(fresh, at=T0)])
    deleted = store.prune(T0 - timedelta(days=400), report_ids_before=T0 - timedelta(days=14))
    assert deleted == 1
    assert store.report_count() == 2  # type: ignore[attr-defined]
    later = T0 + timedelta(days=2)
    assert store.save_batch([received(delayed, at=later), received(fresh, at=later)]) == [
        False,
        False,
    ]


def _store_at_version(db_url: str, last: int) -> None:
    """Create the schema as an earlier release left it: migrations up to `last` only."""
    backend = "sqlite" if scheme_of(db_url) == "sqlite" else "postgres"
    chosen = [m for m in migrations(backend) if m[0] <= last]
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied_at REAL NOT NULL)")  # fmt: skip
        for version, name, sql in chosen:
            for statement in statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, name))
        conn.execute(
            "INSERT INTO report_ids (report_id, school_id, received_at) VALUES (?, ?, ?)",
            ("kept-by-v4", "SCH-1", T0.timestamp()),
        )
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as pg:
            pg.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT"
                       " NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")  # fmt: skip
            for version, name, sql in chosen:
                pg.execute(sql.encode())
                pg.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                           (version, name))  # fmt: skip
            pg.execute(
                "INSERT INTO report_ids (report_id, school_id, received_at) VALUES (%s, %s, %s)",
                ("kept-by-v4", "SCH-1", T0),
            )


def test_an_upgrade_keeps_the_ids_stored_per_school_before_it(db_url: str) -> None:
    _store_at_version(db_url, 4)
    store = open_store(db_url)
    try:
        assert store.schema_version() >= 5  # type: ignore[attr-defined]
        assert store.report_count() == 1  # type: ignore[attr-defined]
        old = bandwidth(report_id="kept-by-v4", at=T0 - timedelta(minutes=3))
        same_id_elsewhere = bandwidth(school="SCH-2", report_id="kept-by-v4")
        # the broker redelivers the stored report after the upgrade: still the same report;
        # another school's report with that id is not
        batch = [received(old, at=T0), received(same_id_elsewhere), received(bandwidth())]
        assert store.save_batch(batch) == [False, True, True]
        assert store.report_count() == 3  # type: ignore[attr-defined]
        # the old ids age out like the new ones; then the check costs nothing
        store.prune(T0 - timedelta(days=400), report_ids_before=T0 + timedelta(seconds=1))
        assert store._legacy_ids is False  # type: ignore[attr-defined]
        assert store.report_count() == 0  # type: ignore[attr-defined]
    finally:
        store.close()
