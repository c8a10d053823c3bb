"""The store on both backends (SQLite file, real PostgreSQL): what ingest writes, policy reads."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from agent.protocol import OsInfo
from collector.evaluate import evaluate
from collector.model import DeviceCounts, Reject, School, Store, StoreError
from collector.policy import load_policy
from collector.store import open_store, redact, sqlite_path
from tests.collector.reports import T0, bandwidth, heartbeat, inventory, received, status


@pytest.fixture
def store(db_url: str) -> Store:
    s = open_store(db_url)
    yield s  # type: ignore[misc]
    s.close()


def school(sid: str, name: str = "Trường Tiểu học Nguyễn Trãi", **kw: object) -> School:
    base: dict[str, object] = dict(
        name=name,
        province="Hà Nội",
        commune="Phường Ba Đình",
        level="primary",
        lat=21.03,
        lon=105.85,
        students=600,
    )
    base.update(kw)
    return School(school_id=sid, **base)  # type: ignore[arg-type]


def test_a_redelivered_report_is_a_duplicate_and_stored_once(store: Store) -> None:
    first = bandwidth(down=30.0)
    assert store.save_batch([received(first)]) == [True]
    again = bandwidth(down=99.0, report_id=first.report_id)
    other = bandwidth(down=40.0)
    # the same id twice inside one batch, and an id stored by an earlier batch
    assert store.save_batch([received(again), received(other), received(other)]) == [
        False,
        True,
        False,
    ]
    rows = store.bandwidth_since(T0 - timedelta(days=1))
    assert sorted(r.download_mbps or 0 for r in rows) == [30.0, 40.0]


def test_registry_upsert_updates_rows_and_round_trips_vietnamese(store: Store) -> None:
    assert store.upsert_schools([school("A"), school("B", students=100)]) == 2
    store.upsert_schools([school("B", name="Trường THCS Lê Quý Đôn", contracted_mbps=50.0)])
    by_id = {s.school_id: s for s in store.schools()}
    assert set(by_id) == {"A", "B"}
    assert by_id["A"].name == "Trường Tiểu học Nguyễn Trãi"
    assert by_id["A"].province == "Hà Nội" and by_id["A"].commune == "Phường Ba Đình"
    assert by_id["B"].name == "Trường THCS Lê Quý Đôn"
    assert by_id["B"].students == 600 and by_id["B"].contracted_mbps == 50.0
    assert by_id["B"].computers_required is None


def test_devices_keep_the_newest_inventory_and_last_seen(store: Store) -> None:
    newer = inventory(at=T0 + timedelta(hours=2), memory_mb=16384, os_version="11")
    older = inventory(at=T0, memory_mb=2048, os_version="7")
    later_heartbeat = heartbeat(at=T0 + timedelta(hours=5))
    store.save_batch([received(newer)])
    # an older inventory delivered late from the outbox must not replace the newer one
    store.save_batch([received(older), received(later_heartbeat)])
    store.save_batch([received(heartbeat(at=T0 - timedelta(days=3)))])
    store.save_batch([received(inventory(school="SCH-2", device="dev-1", memory_mb=4096))])
    devices = {(d.school_id, d.device_id): d for d in store.devices()}
    assert set(devices) == {("SCH-1", "dev-1"), ("SCH-2", "dev-1")}
    d = devices["SCH-1", "dev-1"]
    assert d.memory_mb == 16384 and d.os_version == "11" and d.cpu_cores == 4
    assert d.inventory_at == T0 + timedelta(hours=2)
    assert d.last_seen == T0 + timedelta(hours=5)
    assert d.out_of_support is False and d.machine_kind == "desktop"
    assert devices["SCH-2", "dev-1"].memory_mb == 4096


def test_a_device_heard_from_without_inventory_is_listed(store: Store) -> None:
    store.save_batch([received(status(device="dev-9", at=T0))])
    (d,) = store.devices()
    assert d.device_id == "dev-9" and d.inventory_at is None and d.memory_mb is None
    assert d.last_seen == T0


def test_heartbeats_are_summed_per_school_and_hour(store: Store) -> None:
    batch = [
        heartbeat(device="a", at=T0 + timedelta(minutes=1), checks=10, ok=9),
        heartbeat(device="b", at=T0 + timedelta(minutes=59), checks=10, ok=10),
        heartbeat(device="a", at=T0 + timedelta(minutes=61), reachable=False),  # no checks
        heartbeat(school="SCH-2", at=T0 + timedelta(minutes=5), reachable=True),
    ]
    store.save_batch([received(batch[0]), received(batch[1])])
    store.save_batch([received(h) for h in batch[2:]])
    store.save_batch([received(heartbeat(at=T0 + timedelta(minutes=2), checks=5, ok=5))])
    hours = {(h.school_id, h.hour): h for h in store.heartbeat_hours_since(T0)}
    h = hours["SCH-1", T0]
    assert (h.heartbeats, h.checks, h.checks_ok) == (3, 25, 24)
    h = hours["SCH-1", T0 + timedelta(hours=1)]
    assert (h.heartbeats, h.checks, h.checks_ok) == (1, 1, 0)
    h = hours["SCH-2", T0]
    assert (h.heartbeats, h.checks, h.checks_ok) == (1, 1, 1)
    later = store.heartbeat_hours_since(T0 + timedelta(hours=1, minutes=30))
    assert [(h.school_id, h.hour) for h in later] == [("SCH-1", T0 + timedelta(hours=1))]


def test_bandwidth_since_returns_raw_tests_including_failures(store: Store) -> None:
    store.save_batch(
        [
            received(bandwidth(at=T0 - timedelta(days=8), down=1.0)),
            received(bandwidth(at=T0, down=22.5)),
            received(bandwidth(at=T0 + timedelta(hours=1), error="server unreachable")),
        ]
    )
    rows = store.bandwidth_since(T0 - timedelta(days=7))
    assert [(r.download_mbps, r.error) for r in rows] == [
        (22.5, None),
        (None, "server unreachable"),
    ]
    assert rows[0].measured_at == T0 and rows[0].upload_mbps == 5.0 and not rows[0].skipped


def test_last_report_per_school_and_unregistered_reporters(store: Store) -> None:
    store.upsert_schools([school("REG"), school("SILENT")])
    store.save_batch(
        [
            received(bandwidth(school="REG", at=T0)),
            received(heartbeat(school="REG", at=T0 + timedelta(hours=3))),
            received(status(school="GHOST", at=T0 + timedelta(hours=1))),
        ]
    )
    # a late, older report does not move the last report back
    store.save_batch([received(bandwidth(school="REG", at=T0 - timedelta(days=2)))])
    assert store.reporting_school_ids() == {"REG", "GHOST"}
    assert store.last_report_per_school() == {
        "REG": T0 + timedelta(hours=3),
        "GHOST": T0 + timedelta(hours=1),
    }


def test_rejects_are_kept_newest_first_and_bounded(db_url: str) -> None:
    store = open_store(db_url, rejects_kept=50)
    try:
        for n in range(3):
            store.save_rejects(
                [
                    Reject(T0, f"edugap/v1/S/d/{n}-{i}", "bad_json", "oops", "{\x00 Trư")
                    for i in range(30)
                ]
            )
        got = store.recent_rejects(limit=1000)
        assert len(got) == 50
        assert got[0].topic == "edugap/v1/S/d/2-29" and got[0].reason == "bad_json"
        assert got[0].payload_excerpt.endswith(" Trư")
        assert len(store.recent_rejects(limit=5)) == 5
    finally:
        store.close()


def test_prune_deletes_old_raw_rows_and_keeps_recent(store: Store) -> None:
    old = bandwidth(at=T0 - timedelta(days=40))
    store.save_batch(
        [
            received(old, at=T0 - timedelta(days=40)),
            received(heartbeat(at=T0 - timedelta(days=40)), at=T0 - timedelta(days=40)),
            received(bandwidth(at=T0)),
            received(heartbeat(at=T0)),
        ]
    )
    deleted = store.prune(T0 - timedelta(days=30))
    assert deleted == 4  # one bandwidth row, one heartbeat hour, two report ids
    assert [r.measured_at for r in store.bandwidth_since(T0 - timedelta(days=90))] == [T0]
    assert [h.hour for h in store.heartbeat_hours_since(T0 - timedelta(days=90))] == [T0]
    # devices and last reports are state, not raw rows: they stay
    assert store.reporting_school_ids() == {"SCH-1"}


def test_report_ids_have_their_own_shorter_window(store: Store) -> None:
    recent, old = bandwidth(at=T0), bandwidth(at=T0 - timedelta(days=20))
    store.save_batch([received(recent), received(old)])
    deleted = store.prune(T0 - timedelta(days=400), report_ids_before=T0 - timedelta(days=14))
    assert deleted == 1  # only the 20-day-old report id; both speed tests stay for the policy
    assert store.report_count() == 1  # type: ignore[attr-defined]
    assert len(store.bandwidth_since(T0 - timedelta(days=90))) == 2
    # a redelivery inside the id window is still a duplicate
    assert store.save_batch([received(recent)]) == [False]


def test_the_refresher_prunes_report_ids_on_their_own_window(store: Store) -> None:
    from collector.snapshots import SnapshotHolder, SnapshotRefresher

    store.save_batch([received(bandwidth(at=T0 - timedelta(days=d))) for d in (1, 20)])
    refresher = SnapshotRefresher(
        lambda now: evaluate(store, load_policy(), now), SnapshotHolder(), 60,
        prune=store.prune, retention=timedelta(days=400),
        report_id_retention=timedelta(days=14), clock=lambda: T0,
    )  # fmt: skip
    refresher.refresh()
    assert store.report_count() == 1  # type: ignore[attr-defined]
    assert len(store.bandwidth_since(T0 - timedelta(days=90))) == 2


def test_speed_tests_since_groups_successful_tests_per_school(store: Store) -> None:
    skipped = msgspec.structs.replace(bandwidth("A", at=T0), skipped=True)
    store.save_batch(
        [
            received(r)
            for r in (
                bandwidth("A", at=T0 - timedelta(hours=2), down=10.0),
                bandwidth("A", "dev-2", at=T0, down=30.0),
                bandwidth("A", at=T0 - timedelta(hours=1), error="timeout"),
                skipped,
                bandwidth("A", at=T0 - timedelta(days=8), down=99.0),  # before `since`
                bandwidth("B", at=T0 - timedelta(hours=3), down=5.5),
                bandwidth("C", at=T0, error="no server"),  # no successful test: absent
            )
        ]
    )
    tests = store.speed_tests_since(T0 - timedelta(days=7))
    assert sorted(tests) == ["A", "B"]
    a, b = tests["A"], tests["B"]
    assert (sorted(a.down), a.up, a.latency, a.newest) == ([10.0, 30.0], [5.0, 5.0], [30.0] * 2, T0)
    assert (b.down, b.newest) == ([5.5], T0 - timedelta(hours=3))


def test_device_counts_are_per_school_and_follow_the_minimums(store: Store) -> None:
    old_os = msgspec.structs.replace(
        inventory("A", "d4", T0), os=OsInfo(name="Windows", version="7", out_of_support=True)
    )
    store.save_batch(
        [
            received(r)
            for r in (
                inventory("A", "d1", T0, memory_mb=3800, cores=2),  # usable after the slack
                inventory("A", "d2", T0, memory_mb=2048),  # too little RAM
                inventory("A", "d3", T0, cores=1),  # one core
                old_os,  # usable, but needs an upgrade
                status("A", "d5", T0),  # reporting, no inventory yet: not usable
                inventory("A", "d6", T0 - timedelta(days=30)),  # not live
                inventory("B", "d1", T0 - timedelta(days=30)),  # B has no live device
            )
        ]
    )
    counts = store.device_counts(T0 - timedelta(days=21), 3686.4, 2)
    assert counts == {"A": DeviceCounts(reporting=5, usable=2, out_of_support=1)}


def test_heartbeat_sums_cover_only_the_given_hours(store: Store) -> None:
    hours = [T0 + timedelta(hours=h) for h in range(3)]
    store.save_batch(
        [
            received(r)
            for r in (
                heartbeat("A", "d1", hours[0], checks=60, ok=60),
                heartbeat("A", "d2", hours[0] + timedelta(minutes=30), checks=60, ok=30),
                heartbeat("A", "d1", hours[1], checks=10, ok=15),  # ok above checks counts 10
                # no checks of its own: counts as one check, failed when unreachable
                heartbeat("A", "d1", hours[2], reachable=False),
                heartbeat("A", "d1", T0 - timedelta(hours=1), checks=60, ok=0),  # not asked
                heartbeat("B", "d1", T0 - timedelta(hours=1), checks=60, ok=0),  # not asked
                heartbeat("C", "d1", hours[2]),
            )
        ]
    )
    assert store.heartbeat_sums(frozenset(hours)) == {"A": (100, 131), "C": (1, 1)}
    assert store.heartbeat_sums(frozenset()) == {}


def test_migrations_rerun_safely_on_an_existing_database(db_url: str) -> None:
    first = open_store(db_url)
    first.upsert_schools([school("A")])
    first.save_batch([received(bandwidth())])
    version = first.schema_version()  # type: ignore[attr-defined]
    first.close()
    second = open_store(db_url)
    try:
        assert second.schema_version() == version >= 1  # type: ignore[attr-defined]
        assert [s.school_id for s in second.schools()] == ["A"]
        assert len(second.bandwidth_since(T0 - timedelta(days=1))) == 1
    finally:
        second.close()


def test_readers_see_writes_while_a_writer_thread_commits(store: Store) -> None:
    errors: list[BaseException] = []
    seen: list[int] = []

    def write() -> None:
        try:
            for i in range(20):
                store.save_batch(
                    [received(bandwidth(at=T0 + timedelta(seconds=i * 50 + j))) for j in range(50)]
                )
        except BaseException as e:
            errors.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():
        seen.append(len(store.bandwidth_since(T0)))
    writer.join()
    assert not errors
    assert seen == sorted(seen)  # each reader saw whole batches in commit order
    assert len(store.bandwidth_since(T0)) == 1000


def test_text_with_nul_characters_is_stored(store: Store) -> None:
    weird = bandwidth(error="timeout\x00 after 30 s", report_id="nul\x00-report-id")
    assert store.save_batch([received(weird)]) == [True]
    (row,) = store.bandwidth_since(T0)
    assert row.error is not None and row.error.startswith("timeout")


def test_open_store_names_the_url_on_failure(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no-such-dir"):
        open_store(str(tmp_path / "no-such-dir" / "x.db"))
    with pytest.raises(StoreError, match="unknown scheme 'mysql'"):
        open_store("mysql://u:secret@h/db")
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://edugap:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(caught.value)


def test_url_forms() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://h/db") == "postgresql://h/db"
    assert sqlite_path("sqlite:////var/lib/edugap.db") == "/var/lib/edugap.db"
    assert sqlite_path("sqlite:///edugap.db") == "edugap.db"
    assert sqlite_path("/tmp/x.db") == "/tmp/x.db"


def test_rejects_command_lists_the_newest_with_reasons(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.cli import main

    store = open_store(db_url)
    store.save_rejects(
        [
            Reject(T0, "edugap/v1/S/d/bandwidth", "bad_json", "truncated at byte 12", '{"sch'),
            Reject(T0, "edugap/v1/S/d/heartbeat", "too_large", "70000 bytes", "{ "),
        ]
    )
    store.close()
    assert main(["rejects", "--db", db_url, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "too_large" in out and "70000 bytes" in out and "bad_json" not in out
    assert main(["rejects", "--db", db_url, "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["reason"] for line in lines] == ["too_large", "bad_json"]


def test_rejects_command_refuses_a_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.cli import main

    missing = tmp_path / "typo.db"
    assert main(["rejects", "--db", str(missing)]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not missing.exists()


def test_two_writers_saving_the_same_reports_store_each_once(db_url: str) -> None:
    """Two collectors (two store objects) racing on overlapping batches: exactly once."""
    reports = [
        received(heartbeat(device=f"d{i % 40}", at=T0 + timedelta(seconds=i))) for i in range(600)
    ]
    reports += [
        received(bandwidth(device=f"d{i % 40}", at=T0 + timedelta(seconds=i))) for i in range(200)
    ]
    stores = [open_store(db_url), open_store(db_url)]
    results: list[list[bool]] = [[], []]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        order = reports if n == 0 else reports[::-1]  # opposite orders: worst case for locks
        try:
            for start in range(0, len(order), 100):
                results[n] += stores[n].save_batch(order[start : start + 100])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert sum(results[0]) + sum(results[1]) == len(reports)
        assert len(stores[0].bandwidth_since(T0)) == 200
        hours = stores[0].heartbeat_hours_since(T0)
        assert sum(h.heartbeats for h in hours) == 600
    finally:
        for s in stores:
            s.close()
