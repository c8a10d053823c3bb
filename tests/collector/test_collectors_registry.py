"""The collectors registry in both stores, and what it lets `retire` do."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from edugap.collector.collectors import (
    RETIRED,
    RUNNING,
    STOPPED,
    CollectorEntry,
    CollectorRegistry,
    RegistryKeeper,
    RetireError,
    client_id_for,
)
from edugap.collector.retire import check_retirable
from edugap.collector.store import open_store
from edugap.protocol.mqtt import BrokerSettings

BROKER = BrokerSettings(username="edugap-collector", password="pw")


def entry(
    name: str, *, state: str = RUNNING, seen: float = 1000.0, shared: bool = True
) -> CollectorEntry:
    fingerprint = client_id_for(BROKER, "g", name).fingerprint
    return CollectorEntry("g", name, True, fingerprint, "mqtt://b:1883", "host", 42, state,
                          seen, seen, seen)  # fmt: skip


def test_each_store_keeps_the_registry_and_one_share_name_per_group(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert isinstance(store, CollectorRegistry)
        assert store.register_collector(entry("a")) is None
        store.register_collector(entry("b"))
        store.touch_collector("g", "a", 2000.0)
        store.set_collector_state("g", "b", STOPPED, 1500.0)
        again = store.register_collector(entry("a", seen=3000.0))
        assert again is not None and again.last_seen_at == 2000.0  # the row it replaced
        rows = {e.name: e for e in store.collectors()}
        assert (rows["a"].state, rows["a"].last_seen_at) == (RUNNING, 3000.0)
        assert (rows["b"].state, rows["b"].state_at) == (STOPPED, 1500.0)
        share = store.share_name("g")
        assert share.startswith("g-") and len(share) > 30 and store.share_name("g") == share
        assert store.share_name("h") != share
    finally:
        store.close()
    reopened = open_store(db_url)  # kept: every collector of the group finds the same name
    try:
        assert reopened.share_name("g") == share  # type: ignore[attr-defined]
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("rows", "name", "named"),
    [
        ([entry("a"), entry("b", state=STOPPED)], "c", "no collector 'c'"),
        ([entry("a"), entry("b", seen=990.0)], "b", "is running"),
        ([entry("a", state=STOPPED), entry("b", state=STOPPED)], "b", "no other collector"),
        ([entry("a", seen=100.0), entry("b", state=STOPPED)], "b", "no other collector"),
        ([entry("a"), entry("b", state=RETIRED)], "b", None),
        ([entry("a"), entry("b", seen=100.0)], "b", None),  # silent: killed, not running
    ],
)
def test_retire_refuses_what_would_lose_reports(
    rows: list[CollectorEntry], name: str, named: str | None
) -> None:
    client_id = client_id_for(BROKER, "g", name)
    if named is None:
        assert check_retirable(rows, "g", name, client_id, False, 1000.0) is not None
        return
    with pytest.raises(RetireError, match=named):
        check_retirable(rows, "g", name, client_id, False, 1000.0)
    check_retirable(rows, "g", name, client_id, True, 1000.0)  # --force


def test_retire_refuses_another_client_id() -> None:
    rows = [entry("a"), entry("b", state=STOPPED)]
    other = client_id_for(BrokerSettings(username="edugap-collector", password="new"), "g", "b")
    with pytest.raises(RetireError, match="--client-id"):
        check_retirable(rows, "g", "b", other, False, 1000.0)


def test_a_collector_warns_when_its_id_changed_or_its_group_mixes_subscriptions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(str(tmp_path / "edugap.db"))
    try:
        assert isinstance(store, CollectorRegistry)
        now = time.time()
        store.register_collector(replace(entry("b"), last_seen_at=now))  # b runs, shared
        first = RegistryKeeper(store, replace(entry("a"), shared=False), every=3600)
        first.start()
        first.stop()
        assert "does not use the shared subscription" in caplog.text
        assert store.collectors()[0].state == STOPPED
        caplog.clear()
        moved = client_id_for(BrokerSettings(username="edugap-collector", password="new"), "g", "a")
        second = RegistryKeeper(
            store, replace(entry("a"), client_id_hash=moved.fingerprint), every=3600
        )
        second.start()
        second.stop()
        assert "another client id" in caplog.text
    finally:
        store.close()
