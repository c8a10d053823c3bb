"""Durable outbox: every report is written here first and leaves only when the broker acked it.

SQLite in WAL mode in the state directory. Rows are kept in the order they were made (`seq`).
The outbox is bounded by rows and payload bytes; when full, the oldest rows are dropped and the
count is kept (persisted) until a heartbeat claims it, so the collector learns what was lost.

One Outbox object is used from one thread; other processes (`edugap-agent status`) open their
own connection, which WAL allows while the service writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edugap.protocol import messages as protocol

log = logging.getLogger(__name__)

FILE_NAME = "outbox.sqlite3"

_MIGRATIONS = (
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        report_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        size INTEGER NOT NULL,
        measured_at TEXT NOT NULL,
        claimed_dropped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value);
    INSERT INTO meta (key, value) VALUES ('dropped_pending', 0), ('dropped_total', 0),
        ('acked_total', 0), ('last_ack_at', NULL), ('last_enqueued_at', NULL);
    """,
)


@dataclass(frozen=True, slots=True)
class Row:
    """One report waiting for delivery."""

    seq: int
    report_id: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What `edugap-agent status` shows about the outbox."""

    depth: int
    size_bytes: int
    dropped_pending: int
    dropped_total: int
    acked_total: int
    last_ack_at: float | None
    last_enqueued_at: float | None
    oldest_measured_at: str | None
    # set while the broker answers "no matching subscribers" (no collector subscribed)
    held_since: float | None = None
    held_retry_at: float | None = None
    # set while the broker refuses this device's reports (its ACL), with the reason
    refused_since: float | None = None
    refused_cause: str | None = None


#: SQLite page cache of the outbox connection, KiB.
CACHE_KIB = 256


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; IMMEDIATE takes the write lock up front, so it cannot fail half-way
    on a lock another connection holds."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the outbox database with the durability settings it needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a report the agent made must survive a power cut, not only a crash
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    # SQLite's default page cache is 2 MB per connection, and a long backlog fills it while
    # draining; rows are read once, in order, so a small cache costs the drain nothing.
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        with _transaction(conn):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
    return conn


def read_stats(path: Path) -> OutboxStats:
    """The outbox's figures, read-only: safe while the service runs, and never leaves files
    owned by the reader (an administrator's `status` must not lock the service user out)."""
    owner = path.stat()
    before = {p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        stats = _stats(conn)
    finally:
        conn.close()
    if hasattr(os, "chown") and os.geteuid() == 0:
        for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if extra.exists() and extra not in before:
                os.chown(extra, owner.st_uid, owner.st_gid)
    return stats


def _stats(conn: sqlite3.Connection) -> OutboxStats:
    rows, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    oldest = conn.execute("SELECT measured_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
    return OutboxStats(
        depth=int(rows),
        size_bytes=int(size),
        dropped_pending=int(meta["dropped_pending"] or 0),
        dropped_total=int(meta["dropped_total"] or 0),
        acked_total=int(meta["acked_total"] or 0),
        last_ack_at=meta["last_ack_at"],
        last_enqueued_at=meta["last_enqueued_at"],
        oldest_measured_at=oldest[0] if oldest else None,
        held_since=meta.get("held_since"),
        held_retry_at=meta.get("held_retry_at"),
        refused_since=meta.get("refused_since"),
        refused_cause=meta.get("refused_cause"),
    )


@dataclass(frozen=True, slots=True)
class Salvage:
    """What a damaged outbox held, as far as it can be read."""

    readable: bool = False
    reports: int = 0  # rows that were waiting
    dropped_pending: int = 0  # drops not yet reported, including those these rows claimed
    dropped_total: int = 0
    acked_total: int = 0

    def as_meta(self) -> list[tuple[str, int]]:
        return [
            ("dropped_pending", self.dropped_pending),
            ("dropped_total", self.dropped_total),
            ("acked_total", self.acked_total),
        ]


def salvage_counts(path: Path) -> Salvage:
    """Count the reports of a damaged outbox file: the rows of its table that can still be
    read (walking the table, not an index, until the damage), what they had claimed, and its
    counters. A file that cannot be read at all gives readable=False and zeros."""
    try:
        conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return Salvage()
    try:
        rows = claimed = 0
        try:
            cursor = conn.execute("SELECT claimed_dropped FROM outbox NOT INDEXED")
            for (row_claimed,) in cursor:
                rows += 1
                claimed += int(row_claimed or 0)
        except sqlite3.DatabaseError:
            if rows == 0:
                return Salvage()
        meta: dict[str, int] = {}
        with contextlib.suppress(sqlite3.DatabaseError, TypeError, ValueError):
            meta = {k: int(v or 0) for k, v in conn.execute("SELECT key, value FROM meta")}
        return Salvage(
            readable=True,
            reports=rows,
            dropped_pending=meta.get("dropped_pending", 0) + rows + claimed,
            dropped_total=meta.get("dropped_total", 0) + rows,
            acked_total=meta.get("acked_total", 0),
        )
    finally:
        conn.close()


class Outbox:
    """Reports waiting for the broker, in order, bounded by rows and bytes."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 20000,
        max_bytes: int = 50 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._clock = clock
        try:
            self._db = connect(path)
            self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.OperationalError:
            raise  # locked, read-only, no space: not the file's fault; keep it
        except sqlite3.DatabaseError as e:
            # a damaged file (disk fault, power cut on a cheap SD card) must not stop the
            # agent for ever: keep it aside for whoever investigates, start empty, and count
            # what was in it as dropped, so the next heartbeat tells the collector
            aside = path.with_name(f"{path.name}.corrupt-{int(clock())}")
            log.error("outbox %s is unreadable (%s); moved to %s, starting empty", path, e, aside)
            os.replace(path, aside)
            wal = Path(f"{path}-wal")
            if wal.exists():  # it may hold the newest reports: it goes with its file
                os.replace(wal, Path(f"{aside}-wal"))
            Path(f"{path}-shm").unlink(missing_ok=True)
            lost = salvage_counts(aside)
            self._db = connect(path)
            with _transaction(self._db):
                for key, value in lost.as_meta():
                    self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            if lost.readable:
                log.error(
                    "%d report(s) in the damaged outbox counted as dropped (%d to report)",
                    lost.reports,
                    lost.dropped_pending,
                )
            else:
                log.error("the damaged outbox cannot be read: its reports cannot be counted")

    def close(self) -> None:
        self._db.close()

    def add(self, report: protocol.Report) -> int:
        """Store one report; returns its sequence number."""
        return self._insert(report, claimed=0)

    def add_claiming_dropped(self, build: Callable[[int, int], protocol.Report]) -> protocol.Report:
        """Store the report `build(queue_depth, dropped)` makes, in the transaction that resets
        the dropped count, so a drop is reported exactly once even across a crash."""
        with _transaction(self._db):
            depth = self._count()[0]
            dropped = self._meta_int("dropped_pending")
            report = build(depth, dropped)
            self._insert_row(report, claimed=dropped)
            self._db.execute("UPDATE meta SET value = 0 WHERE key = 'dropped_pending'")
            self._enforce_caps()
        return report

    def _insert(self, report: protocol.Report, claimed: int) -> int:
        with _transaction(self._db):
            seq = self._insert_row(report, claimed)
            self._enforce_caps()
        return seq

    def _insert_row(self, report: protocol.Report, claimed: int) -> int:
        payload = protocol.encode(report)
        topic = protocol.topic_for(report.school_id, report.device_id, report.kind)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (report_id, topic, payload, size, measured_at,"
            " claimed_dropped) VALUES (?, ?, ?, ?, ?, ?)",
            (
                report.report_id,
                topic,
                payload,
                len(payload),
                report.measured_at.isoformat(),
                claimed,
            ),
        )
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'last_enqueued_at'", (self._clock(),)
        )
        return cursor.lastrowid or 0

    def _enforce_caps(self) -> None:
        """Drop the oldest rows until the outbox fits; count them (and what they claimed)."""
        rows, size = self._count()
        if rows <= self.max_rows and size <= self.max_bytes:
            return
        dropped = claimed = 0
        excess_rows, excess_bytes = rows - self.max_rows, size - self.max_bytes
        # never drop the newest row: it is the one just made, and the reason we are here
        for seq, row_size, row_claimed in self._db.execute(
            "SELECT seq, size, claimed_dropped FROM outbox ORDER BY seq LIMIT ?", (rows - 1,)
        ).fetchall():
            if excess_rows <= 0 and excess_bytes <= 0:
                break
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            excess_rows -= 1
            excess_bytes -= row_size
            dropped += 1
            claimed += row_claimed
        self._db.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'dropped_pending'", (dropped + claimed,)
        )
        self._db.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,)
        )
        log.warning("outbox full: dropped %d oldest report(s)", dropped)

    def drop_other_topics(self, prefix: str) -> int:
        """Drop (and count as dropped) rows not addressed under `prefix`: reports made under an
        earlier school id, which the broker's ACL refuses for good once the id is fixed."""
        with _transaction(self._db):
            dropped, claimed = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(claimed_dropped), 0) FROM outbox"
                " WHERE substr(topic, 1, ?) != ?",
                (len(prefix), prefix),
            ).fetchone()
            if dropped:
                self._db.execute(
                    "DELETE FROM outbox WHERE substr(topic, 1, ?) != ?", (len(prefix), prefix)
                )
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped_pending'",
                    (dropped + claimed,),
                )
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,)
                )
        return int(dropped)

    def pending(self, after_seq: int = 0, limit: int = 20) -> list[Row]:
        """Up to `limit` rows after `after_seq`, oldest first."""
        return [
            Row(*r)
            for r in self._db.execute(
                "SELECT seq, report_id, topic, payload FROM outbox WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove rows the broker acknowledged, in one transaction; returns how many went."""
        batch = [(s,) for s in seqs]
        if not batch:
            return 0
        with _transaction(self._db):
            before = self._db.total_changes
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", batch)
            removed = self._db.total_changes - before
            self._db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'acked_total'", (removed,)
            )
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_ack_at'", (self._clock(),)
            )
        return removed

    def hold(self, retry_in: float) -> None:
        """Record (for `edugap-agent status`) that reports are held because the broker has no
        collector subscribed, and when the next one is tried."""
        now = self._clock()
        with _transaction(self._db):
            self._set_meta("held_since", now, keep=True)
            self._set_meta("held_retry_at", now + retry_in)

    def release(self) -> None:
        """Reports are no longer held."""
        with _transaction(self._db):
            self._set_meta("held_since", None)
            self._set_meta("held_retry_at", None)

    def refuse(self, cause: str | None) -> None:
        """Record (for `edugap-agent status`) that the broker refuses this device's reports and
        why; None: it accepts them again."""
        with _transaction(self._db):
            if cause is None:
                self._set_meta("refused_since", None)
            else:
                self._set_meta("refused_since", self._clock(), keep=True)
            self._set_meta("refused_cause", cause)

    def _set_meta(self, key: str, value: float | str | None, keep: bool = False) -> None:
        # an upsert: keys added after the first outbox version need no migration
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value ="
            + (" coalesce(value, excluded.value)" if keep else " excluded.value"),
            (key, value),
        )

    def depth(self) -> int:
        return self._count()[0]

    def stats(self) -> OutboxStats:
        return _stats(self._db)

    def _count(self) -> tuple[int, int]:
        rows, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        return int(rows), int(size)

    def _meta_int(self, key: str) -> int:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(value or 0)
