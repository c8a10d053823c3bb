"""The store on both backends (SQLite file, real PostgreSQL): what ingest writes, policy reads."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from edugap.collector.model import DeviceCounts, Reject, School, Store, StoreDataError, StoreError
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import load_policy
from edugap.collector.store import open_store, redact, sqlite_path
from edugap.protocol.messages import OsInfo
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
    from edugap.collector.policy.snapshots import SnapshotHolder, SnapshotRefresher

    store.save_batch([received(bandwidth(at=T0 - timedelta(days=d))) for d in (1, 20)])
    refresher = SnapshotRefresher(
        lambda now: evaluate(store, load_policy(), now), SnapshotHolder(), 60,
        prune=store.prune, retention=timedelta(days=400),
        report_id_retention=timedelta(days=14), clock=lambda: T0,
    )  # fmt: skip
    refresher.refresh()
    assert store.report_count() == 1  # type: ignore[attr-defined]
    assert len(store.bandwidth_since(T0 - timedelta(days=90))) == 2


def test_speed_tests_since_groups_successful_tests_and_counts_failed_ones(store: Store) -> None:
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
                bandwidth("C", at=T0, error="no server"),  # no successful test: failures only
            )
        ]
    )
    tests = store.speed_tests_since(T0 - timedelta(days=7))
    assert sorted(tests) == ["A", "B", "C"]
    a, b, c = tests["A"], tests["B"], tests["C"]
    assert (sorted(a.down), a.up, a.latency, a.newest) == ([10.0, 30.0], [5.0, 5.0], [30.0] * 2, T0)
    assert (b.down, b.newest) == ([5.5], T0 - timedelta(hours=3))
    # failed tests are counted, skipped ones are not; a school with failures only has no speeds
    assert (a.failed, b.failed, c.failed, c.down, c.newest) == (1, 0, 1, [], None)


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


def test_whole_numbers_among_fractions_are_stored(store: Store) -> None:
    # a number field may hold an int (a struct built in code, not decoded): one int among the
    # batch's floats must not make the batch unstorable
    whole = msgspec.structs.replace(bandwidth(down=None), download_mbps=30, latency_ms=12)
    assert store.save_batch([received(bandwidth(down=25.5)), received(whole)]) == [True, True]
    assert sorted(r.download_mbps or 0 for r in store.bandwidth_since(T0)) == [25.5, 30.0]


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
    from edugap.collector.cli import main

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
    from edugap.collector.cli import main

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


def test_report_ids_are_unique_per_school_not_globally(store: Store) -> None:
    mine = bandwidth(school="A", report_id="same-id-0001")
    theirs = bandwidth(school="B", report_id="same-id-0001")
    again = bandwidth(school="A", report_id="same-id-0001")
    # another school reusing an id must not suppress this school's report
    assert store.save_batch([received(mine), received(theirs), received(again)]) == [
        True,
        True,
        False,
    ]
    assert store.save_batch([received(theirs)]) == [False]
    assert sorted(r.school_id for r in store.bandwidth_since(T0)) == ["A", "B"]
    assert store.has_report("B", "same-id-0001")  # type: ignore[attr-defined]
    assert not store.has_report("C", "same-id-0001")  # type: ignore[attr-defined]


def _version_1_store(db_url: str) -> None:
    """Create the schema as the first release left it (migration 0001 only)."""
    from edugap.collector.store import scheme_of
    from edugap.collector.store.migrations import migrations, statements

    backend = "sqlite" if scheme_of(db_url) == "sqlite" else "postgres"
    version, name, sql = migrations(backend)[0]
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied_at REAL NOT NULL)")  # fmt: skip
        for statement in statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, name))
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as pg:
            pg.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT"
                       " NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")  # fmt: skip
            pg.execute(sql.encode())
            pg.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                       (version, name))  # fmt: skip


def test_a_report_stored_before_the_upgrade_is_still_a_duplicate_after_it(db_url: str) -> None:
    _version_1_store(db_url)
    old = bandwidth(report_id="stored-by-v1")
    if "://" not in db_url:
        import sqlite3

        with sqlite3.connect(db_url) as conn:
            conn.execute("INSERT INTO report_ids VALUES (?, ?)", (old.report_id, T0.timestamp()))
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as pg:
            pg.execute("INSERT INTO report_ids VALUES (%s, %s)", (old.report_id, T0))
    store = open_store(db_url)
    try:
        assert store.schema_version() >= 2  # type: ignore[attr-defined]
        assert store.report_count() == 1  # type: ignore[attr-defined]
        # the broker redelivers it after the upgrade: still the same report
        assert store.save_batch([received(old), received(bandwidth())]) == [False, True]
        assert store.report_count() == 2  # type: ignore[attr-defined]
        # the old ids age out like the new ones; then the check costs nothing
        store.prune(T0 - timedelta(days=400), report_ids_before=T0 + timedelta(seconds=1))
        assert store.report_count() == 0  # type: ignore[attr-defined]
        assert store._legacy_ids is False  # type: ignore[attr-defined]
    finally:
        store.close()


def test_sqlite_upgrade_repairs_times_and_sums_that_stopped_every_snapshot(
    tmp_path: Path,
) -> None:
    import sqlite3

    db = str(tmp_path / "edugap.db")
    _version_1_store(db)
    year_0 = -62135600400.0  # 0001-01-01T00:00:00+01:00, as an earlier version stored it
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO devices (school_id, device_id, last_seen) VALUES ('A', 'd', ?)",
                     (year_0,))  # fmt: skip
        conn.execute("INSERT INTO school_reports VALUES ('A', ?)", (year_0,))
        conn.execute("INSERT INTO heartbeat_hours VALUES ('A', ?, 1, 1, 1)", (year_0 - 3600,))
        # 1,024 heartbeats of 2^53 checks each: SQLite had turned the sum into REAL
        conn.execute("INSERT INTO heartbeat_hours VALUES ('B', ?, 1024, 1.08e19, 1.08e19)",
                     (T0.timestamp(),))  # fmt: skip
    store = open_store(db)
    try:
        snap = evaluate(store, load_policy(), T0)  # raised "year 0 is out of range" before
        assert snap.schools["A"].monitoring == "drop_off"
        (hour,) = store.heartbeat_hours_since(T0)
        assert (hour.checks, hour.checks_ok) == (2**48, 2**48)
    finally:
        store.close()


def test_heartbeat_sums_saturate_instead_of_overflowing(store: Store) -> None:
    # msgspec checks bounds when decoding, not when a struct is built: this is what a report
    # past the door's bounds would do to the sums
    huge = [received(msgspec.structs.replace(heartbeat(at=T0), checks=2**62, checks_ok=2**62))
            for _ in range(600)]  # fmt: skip
    for start in range(0, len(huge), 100):  # across batches, and within one
        assert all(store.save_batch(huge[start : start + 100]))
    (hour,) = store.heartbeat_hours_since(T0)
    assert (hour.heartbeats, hour.checks, hour.checks_ok) == (600, 2**48, 2**48)
    assert store.heartbeat_sums(frozenset([T0])) == {"SCH-1": (2**48, 2**48)}
    snap = evaluate(store, load_policy(), T0 + timedelta(hours=1))
    assert snap.schools["SCH-1"].devices_reporting == 1


def test_a_value_the_store_cannot_take_fails_only_that_batch(store: Store) -> None:
    # year 0 in UTC: no backend (nor Python's UTC datetime) holds it
    from datetime import datetime as dt
    from datetime import timezone

    year_0 = dt(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    poison = received(msgspec.structs.replace(heartbeat(), measured_at=year_0), at=T0)
    good = received(bandwidth())
    with pytest.raises(StoreDataError):
        store.save_batch([good, poison])
    assert store.report_count() == 0  # type: ignore[attr-defined]  # nothing of that batch
    assert store.save_batch([good]) == [True]
    assert evaluate(store, load_policy(), T0).schools["SCH-1"].tests_7d == 1


def test_liveness_is_the_receive_time_and_clock_evidence_flags_devices(store: Store) -> None:
    from edugap.collector.model import Received

    late = T0 + timedelta(days=30)
    cmos = msgspec.structs.replace(bandwidth(device="d1"), measured_at=late)  # clamped
    store.save_batch(
        [
            Received(cmos, late, clock_offset_s=26 * 365 * 86400.0, clock_off=True),
            Received(status(device="d2", at=late), late, clock_offset_s=1.5, clock_off=False),
            # a retained status replayed at subscribe time is only as fresh as its own time
            Received(status(device="d3", at=T0), late, seen_at=T0),
        ]
    )
    devices = {d.device_id: d for d in store.devices()}
    assert [(k, d.last_seen, d.clock_off) for k, d in sorted(devices.items())] == [
        ("d1", late, True),
        ("d2", late, False),
        ("d3", T0, False),
    ]
    counts = store.device_counts(late - timedelta(days=21), 0, 0)
    assert counts["SCH-1"].reporting == 2 and counts["SCH-1"].clock_off == 1
    # newer evidence wins; older evidence (another collector's slower batch) does not
    fixed = Received(status(device="d1", at=late), late + timedelta(hours=1),
                     clock_offset_s=0.2, clock_off=False)  # fmt: skip
    stale = Received(status(device="d1", at=late), late, clock_offset_s=9e8, clock_off=True)
    store.save_batch([fixed])
    store.save_batch([stale])
    assert not next(d for d in store.devices() if d.device_id == "d1").clock_off
    snap = evaluate(store, load_policy(), late)
    assert snap.schools["SCH-1"].devices_clock_off == 0


def test_a_sqlite_store_without_room_on_its_disk_says_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edugap.collector.store.sqlite as sqlite_store

    store = open_store(str(tmp_path / "edugap.db"))
    try:
        assert store.unwritable() is None
        # the real free space of the real file system, against a floor above any disk's size
        monkeypatch.setattr(sqlite_store, "MIN_FREE_BYTES", 2**62)
        why = store.unwritable()
        assert why is not None and "bytes free" in why
    finally:
        store.close()
