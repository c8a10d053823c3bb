"""The on-disk outbox: order, acknowledgement, caps, and dropped counts reported exactly once."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edugap.agent.outbox import Outbox
from edugap.agent.state import DailyUsage, device_id, read_device_id, read_usage, write_usage
from edugap.protocol import messages as protocol

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def heartbeat(n: int, depth: int = 0, dropped: int = 0) -> protocol.Heartbeat:
    return protocol.Heartbeat(
        report_id=f"report-{n:04d}",
        school_id="79000001",
        device_id="dev1",
        measured_at=T0 + timedelta(seconds=n),
        agent_version="test",
        latency_ms=1.0,
        reachable=True,
        queue_depth=depth,
        dropped_reports=dropped,
    )


def claim(outbox: Outbox, n: int) -> protocol.Heartbeat:
    report = outbox.add_claiming_dropped(lambda depth, dropped: heartbeat(n, depth, dropped))
    assert isinstance(report, protocol.Heartbeat)
    return report


def test_reports_leave_in_order_and_only_when_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    seqs = [outbox.add(heartbeat(n)) for n in range(5)]
    rows = outbox.pending(0, 3)
    assert [r.report_id for r in rows] == ["report-0000", "report-0001", "report-0002"]
    assert rows[0].topic == "edugap/v1/79000001/dev1/heartbeat"
    assert protocol.decode(rows[0].topic, rows[0].payload) == heartbeat(0)
    assert [r.seq for r in outbox.pending(rows[-1].seq, 10)] == seqs[3:]
    assert outbox.ack([seqs[1], seqs[0]]) == 2
    assert [r.report_id for r in outbox.pending()] == ["report-0002", "report-0003", "report-0004"]
    assert outbox.stats().acked_total == 2
    assert outbox.stats().last_ack_at is not None


def test_rows_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    for n in range(3):
        first.add(heartbeat(n))
    first.close()
    again = Outbox(path)
    assert [r.report_id for r in again.pending()] == ["report-0000", "report-0001", "report-0002"]


def test_full_outbox_drops_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_rows=3)
    for n in range(5):
        outbox.add(heartbeat(n))
    assert [r.report_id for r in outbox.pending()] == ["report-0002", "report-0003", "report-0004"]
    stats = outbox.stats()
    assert (stats.depth, stats.dropped_pending, stats.dropped_total) == (3, 2, 2)


def test_byte_cap_drops_oldest(tmp_path: Path) -> None:
    size = len(protocol.encode(heartbeat(0)))
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_bytes=size * 2 + size // 2)
    for n in range(4):
        outbox.add(heartbeat(n))
    assert [r.report_id for r in outbox.pending()] == ["report-0002", "report-0003"]
    assert outbox.stats().dropped_total == 2


def test_a_heartbeat_claims_the_dropped_count_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_rows=3)
    for n in range(5):
        outbox.add(heartbeat(n))
    first = claim(outbox, 10)  # also pushes out one more report: counted for the next heartbeat
    assert first.dropped_reports == 2
    assert first.queue_depth == 3
    second = claim(outbox, 11)
    assert second.dropped_reports == 1
    assert outbox.stats().dropped_total == 4


def test_dropping_a_heartbeat_returns_its_claim_to_the_count(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_rows=2)
    for n in range(3):
        outbox.add(heartbeat(n))  # one dropped
    assert claim(outbox, 10).dropped_reports == 1  # pushes out report-0001
    outbox.add(heartbeat(20))  # pushes out report-0002
    outbox.add(heartbeat(21))  # pushes out the heartbeat that carried the count
    total = outbox.stats().dropped_total
    later = claim(outbox, 30)
    # nothing is lost from the count: 1 carried by a dropped heartbeat + 3 dropped since
    assert later.dropped_reports == 1 + 3
    assert total == 4


def test_device_id_is_made_once_and_kept(tmp_path: Path) -> None:
    assert read_device_id(tmp_path) is None
    first = device_id(tmp_path)
    assert protocol.valid_id(first)
    assert device_id(tmp_path) == first
    assert device_id(tmp_path / "elsewhere") != first  # random, not from the hardware


def test_a_damaged_device_id_file_is_kept_aside_and_replaced(tmp_path: Path) -> None:
    (tmp_path / "device_id").write_text("not/valid\n")
    fresh = device_id(tmp_path)
    assert protocol.valid_id(fresh)
    assert (tmp_path / "device_id.bad").read_text() == "not/valid\n"


def test_daily_usage_resets_on_a_new_day(tmp_path: Path) -> None:
    today = T0.date()
    write_usage(tmp_path, DailyUsage(today).add(5_000_000).add(1_000))
    assert read_usage(tmp_path, today) == DailyUsage(today, 5_001_000, 2)
    assert read_usage(tmp_path, today + timedelta(days=1)) == DailyUsage(today + timedelta(days=1))
    (tmp_path / "bandwidth_usage.json").write_text("{broken")
    assert read_usage(tmp_path, today) == DailyUsage(today)


def test_a_damaged_outbox_file_is_kept_aside_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database, a disk fault wrote it" * 100)
    outbox = Outbox(path, clock=lambda: 1234.0)
    outbox.add(heartbeat(1))
    assert [r.report_id for r in outbox.pending()] == ["report-0001"]
    assert (tmp_path / "outbox.sqlite3.corrupt-1234").read_bytes().startswith(b"this is not")


def _damage_index(path: Path) -> None:
    """Overwrite the report_id index's root page: the outbox no longer opens, its table rows
    are still there (what a torn write to a cheap SD card does to one page)."""
    conn = sqlite3.connect(path)
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
    ).fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad" * (page_size // 2))


def test_reports_in_a_damaged_outbox_are_counted_as_dropped(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, max_rows=5, clock=lambda: 1000.0)
    for n in range(7):  # the cap drops two
        outbox.add(heartbeat(n))
    assert claim(outbox, 7).dropped_reports == 2  # this heartbeat carries them (and pushes
    outbox.ack([outbox.pending(0, 1)[0].seq])  # out a third); the oldest left is delivered
    before = outbox.stats()
    assert (before.depth, before.dropped_pending, before.dropped_total) == (4, 1, 3)
    outbox.close()
    _damage_index(path)

    reopened = Outbox(path, clock=lambda: 2000.0)
    assert reopened.depth() == 0  # started empty, the damaged file kept aside
    assert (tmp_path / "outbox.sqlite3.corrupt-2000").exists()
    stats = reopened.stats()
    assert stats.dropped_total == 3 + 4  # earlier drops, and the 4 reports lost now
    assert stats.acked_total == 1
    # the next heartbeat tells the collector: the 4 lost reports, the 2 drops the lost
    # heartbeat was carrying, and the 1 not yet reported
    assert claim(reopened, 8).dropped_reports == 4 + 2 + 1
    assert reopened.stats().dropped_pending == 0


def test_an_outbox_that_cannot_be_read_at_all_keeps_its_wal_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    Path(f"{path}-wal").write_bytes(b"the newest reports may be here")
    outbox = Outbox(path, clock=lambda: 1234.0)
    assert outbox.stats().dropped_pending == 0  # nothing could be counted
    assert (tmp_path / "outbox.sqlite3.corrupt-1234-wal").read_bytes().startswith(b"the newest")
