"""PostgreSQL store (psycopg 3): for several collectors writing to one database.

Idempotency across collectors rests on the primary key of `report_ids` (see postgres_writes).
Upserts are sent in key order so that two collectors' batches cannot deadlock each other.

Here is only what is PostgreSQL's own: connections, the writer's transaction, migrations; the
batch write is in postgres_writes.py and the heartbeat sums in postgres_sums.py. What both
backends write and read alike is in common.py, sums.py and collectors_sql.py, run with the
`POSTGRES` dialect.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from edugap.collector.model import StoreDataError, StoreError
from edugap.collector.store import redact
from edugap.collector.store.collectors_sql import CollectorsSql
from edugap.collector.store.common import CommonSql
from edugap.collector.store.dialect import POSTGRES
from edugap.collector.store.migrations import migrations
from edugap.collector.store.postgres_sums import PostgresSums
from edugap.collector.store.postgres_writes import PostgresWrites

log = logging.getLogger(__name__)

REJECTS_KEPT = 5000
# any fixed number: serialises migrations when two collectors start at the same moment
_MIGRATION_LOCK = 0x6564756761700001
# Errors about a value in the batch: SQLSTATE class 22 (data exception: out of range, bad
# encoding) and 23 (integrity constraint), and what Python raises converting a value. The same
# batch fails again however often it is retried. Everything else (connection lost, disk full,
# server shutting down) is about the store.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, ValueError, OverflowError)


class PostgresStore(PostgresWrites, PostgresSums, CommonSql, CollectorsSql):
    """The PostgreSQL backend of `edugap.collector.model.Store`."""

    dialect = POSTGRES

    def __init__(self, url: str, *, rejects_kept: int = REJECTS_KEPT) -> None:
        self._dsn = url
        self.url = redact(url)
        self.rejects_kept = rejects_kept
        self._lock = threading.Lock()  # the one writer connection
        self._readers: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._writer: psycopg.Connection[Any] | None = None
        try:
            self._migrate()
            with self._transaction("read legacy report ids") as cur:
                self._legacy_ids = self._has_legacy_ids(cur)
        except psycopg.Error as e:
            raise StoreError(f"cannot open PostgreSQL store {self.url}: {e}") from e

    # --- connections ---------------------------------------------------------------------

    def _connect(self, autocommit: bool) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=autocommit, connect_timeout=10)
        conn.execute("SET TIME ZONE 'UTC'")
        if not autocommit:
            conn.commit()
        return conn

    def _writer_conn(self) -> psycopg.Connection[Any]:
        # a connection broken by a server restart is replaced on the next write
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            self._writer = self._connect(autocommit=False)
        return self._writer

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            try:
                conn = self._writer_conn()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except _DATA_ERRORS as e:
                raise StoreDataError(f"cannot {what} to {self.url}: {e}") from e
            except psycopg.Error as e:
                raise StoreError(f"cannot {what} to {self.url}: {e}") from e

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = None
        try:
            if conn is None or conn.closed or conn.broken:
                conn = self._connect(autocommit=True)
            rows = conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot read from {self.url}: {e}") from e
        self._readers.put(conn)
        return rows

    def _migrate(self) -> None:
        with self._transaction("migrate") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_version")
            done = {r[0] for r in cur.fetchall()}
            for version, name, sql in migrations("postgres"):
                if version in done:
                    continue
                log.info("applying PostgreSQL migration %s to %s", name, self.url)
                cur.execute(sql.encode())  # several statements, no parameters
                cur.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name)
                )

    # --- health ---------------------------------------------------------------------------

    def unwritable(self) -> str | None:
        # the server's disk is out of sight: a full one fails the writer's batches, which
        # readiness sees through Ingest.failing_for()
        return None

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
