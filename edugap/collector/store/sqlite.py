"""SQLite store: one writer connection behind a lock, readers on their own pooled connections.

WAL lets readers (HTTP, policy) run while the ingest writer commits. synchronous=FULL: with
WAL this fsyncs the log once per commit, i.e. once per batch of up to a few thousand reports,
which is cheap; NORMAL could lose the last commits on power loss *after* ingest acknowledged
them to the broker, and the broker would then never redeliver them.

Here is only what is SQLite's own: connections, the writer's transaction, migrations, free
space; the batch write is in sqlite_writes.py and the heartbeat sums in sqlite_sums.py. What
both backends write and read alike is in common.py, sums.py and collectors_sql.py, run with
the `SQLITE` dialect.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edugap.collector.model import StoreDataError, StoreError
from edugap.collector.store import sqlite_path
from edugap.collector.store.collectors_sql import CollectorsSql
from edugap.collector.store.common import CommonSql
from edugap.collector.store.dialect import SQLITE
from edugap.collector.store.migrations import migrations, statements
from edugap.collector.store.sqlite_sums import SqliteSums
from edugap.collector.store.sqlite_writes import SqliteWrites

log = logging.getLogger(__name__)

#: Rejects kept; older ones are deleted as new ones arrive.
REJECTS_KEPT = 5000
#: Below this much free space beside the database the store counts as unwritable (/readyz):
#: a batch of a few thousand reports grows the log by a few MiB.
MIN_FREE_BYTES = 16 * 2**20
#: Log pages (4 KiB each by default) between automatic checkpoints; SQLite's default is 1000.
WAL_CHECKPOINT_PAGES = 10000
# Errors about a value in the batch (an int too large to bind, text that cannot be encoded, a
# constraint, a time Python cannot convert): the same batch would fail again however often it
# is retried. Everything else (locked, disk full, I/O) is about the store.
_DATA_ERRORS = (
    ValueError,
    OverflowError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
)


class SqliteStore(SqliteWrites, SqliteSums, CommonSql, CollectorsSql):
    """The SQLite backend of `edugap.collector.model.Store`."""

    dialect = SQLITE

    def __init__(
        self, url: str, *, rejects_kept: int = REJECTS_KEPT, busy_timeout_ms: int = 10000
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.path = sqlite_path(url)
        self.rejects_kept = rejects_kept
        self._lock = threading.Lock()  # the one writer connection
        self._conns_lock = threading.Lock()  # the list of every connection, for close()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        try:
            parent = Path(self.path).parent
            if not parent.exists():
                raise OSError(f"directory {parent} does not exist")
            self._writer = self._connect()
            self._migrate()
            self._legacy_ids = self._has_legacy_ids(self._writer)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite store {url}: {e}") from e

    # --- connections ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one batch is one transaction
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoint every ~40 MiB of log rather than SQLite's 4 MiB: each checkpoint copies
        # every page the batches dirtied back into the database file and fsyncs it, and most of
        # a batch's pages (random report ids) are dirtied again by the next batches, so rarer
        # checkpoints copy each page fewer times. Durability is unchanged: a commit is durable
        # once the log is fsynced (synchronous=FULL); the checkpoint only moves pages.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # another process (an `edugap schools import` beside `edugap serve`) may hold the lock
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: the report id index stays in memory
        with self._conns_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            with self._reader() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read from {self.url}: {e}") from e

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except _DATA_ERRORS as e:
                raise StoreDataError(f"cannot {what} to {self.url}: {e}") from e
            except sqlite3.Error as e:
                raise StoreError(f"cannot {what} to {self.url}: {e}") from e

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for version, name, sql in migrations("sqlite"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = conn.execute(
                    "SELECT 1 FROM schema_version WHERE version = ?", (version,)
                ).fetchone()
                if done is None:
                    log.info("applying SQLite migration %s to %s", name, self.url)
                    # executescript would commit first; run the statements one by one instead
                    for statement in statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, time.time())
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # --- health ---------------------------------------------------------------------------

    def unwritable(self) -> str | None:
        try:
            free = shutil.disk_usage(Path(self.path).parent).free
        except OSError as e:
            return f"cannot see the free space of {self.path}: {e}"
        if free < MIN_FREE_BYTES:
            return f"{free} bytes free beside {self.path}, below {MIN_FREE_BYTES}"
        return None

    def close(self) -> None:
        with self._lock, self._conns_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error as e:  # closing must not hide the caller's own error
                    log.warning("closing %s: %s", self.url, e)
            self._all.clear()
