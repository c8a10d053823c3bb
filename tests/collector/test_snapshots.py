"""The snapshot refresher: evaluates the policy over the real store, survives a failing
evaluation, prunes old rows once a day, and hands each new snapshot to its listeners."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edugap.collector.model import Received, School, Snapshot, Store
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import load_policy
from edugap.collector.policy.snapshots import SnapshotHolder, SnapshotInfo, SnapshotRefresher
from edugap.collector.store import open_store
from tests.collector.reports import bandwidth

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "snap.db"))
    s.upsert_schools([School("HN-1", "Trường 1", "Thành phố Hà Nội", "Phường Ba Đình",
                             "primary", 21.0, 105.8, 300)])  # fmt: skip
    yield s
    s.close()


def test_refresh_evaluates_the_store_and_tells_listeners(store: Store) -> None:
    policy = load_policy(None)
    store.save_batch([Received(bandwidth("HN-1", "d1", NOW - timedelta(hours=2), 30.0), NOW)])
    holder = SnapshotHolder()
    seen: list[SnapshotInfo] = []
    holder.on_new(seen.append)
    refresher = SnapshotRefresher(lambda now: evaluate(store, policy, now), holder, 60,
                                  clock=lambda: NOW)  # fmt: skip
    info = refresher.refresh()
    assert info is not None and seen == [info]
    assert info.sequence == 1
    snap = holder.current
    assert snap is not None and snap.generated_at == NOW
    assert snap.schools["HN-1"].download_mbps == 30.0
    assert snap.schools["HN-1"].connectivity == "good"
    assert refresher.refresh() is not None and holder.info.sequence == 2  # type: ignore[union-attr]


def test_failed_evaluation_keeps_the_previous_snapshot_and_counts(store: Store) -> None:
    policy = load_policy(None)
    holder = SnapshotHolder()
    broken = [False]

    def evaluate_or_fail(now: datetime) -> Snapshot:
        if broken[0]:
            raise RuntimeError("database went away")
        return evaluate(store, policy, now)

    refresher = SnapshotRefresher(evaluate_or_fail, holder, 60, clock=lambda: NOW)
    first = refresher.refresh()
    broken[0] = True
    assert refresher.refresh() is None
    assert holder.info is first
    assert holder.errors == 1


def test_prunes_once_a_day_with_the_retention(store: Store) -> None:
    policy = load_policy(None)
    old = NOW - timedelta(days=30)
    store.save_batch([Received(bandwidth("HN-1", "d1", old, 5.0), old)])
    clock = [NOW]
    pruned_before: list[datetime] = []

    def prune(before: datetime) -> int:
        pruned_before.append(before)
        return store.prune(before)

    refresher = SnapshotRefresher(lambda now: evaluate(store, policy, now), SnapshotHolder(), 60,
                                  prune=prune, retention=timedelta(days=10),
                                  clock=lambda: clock[0])  # fmt: skip
    refresher.refresh()
    clock[0] = NOW + timedelta(hours=1)
    refresher.refresh()  # within the day: no second prune
    clock[0] = NOW + timedelta(days=1, minutes=1)
    refresher.refresh()
    assert pruned_before == [NOW - timedelta(days=10), clock[0] - timedelta(days=10)]
    assert store.bandwidth_since(NOW - timedelta(days=60)) == []  # the 30-day-old test is gone


def test_thread_refreshes_until_stopped(store: Store) -> None:
    policy = load_policy(None)
    holder = SnapshotHolder()
    refresher = SnapshotRefresher(lambda now: evaluate(store, policy, now), holder, 0.05)
    refresher.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while (holder.info is None or holder.info.sequence < 3) and datetime.now(UTC) < deadline:
            refresher.poke()
            time.sleep(0.01)
        assert holder.info is not None and holder.info.sequence >= 3
    finally:
        refresher.stop()
