"""What differs between the SQL backends in the statements they share: the parameter marker,
how a time is stored, and which text a column can hold.

Everything the two backends write or read alike (common.py, collectors_sql.py, sums.py) is
written once with `?` markers and these three differences; each backend module keeps only the
SQL that is its own (the batch write, the heartbeat sums, connections and migrations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from edugap.collector.store.prepare import clean, to_datetime


def epoch(moment: datetime) -> float:
    """A time as SQLite stores it: epoch seconds."""
    return moment.timestamp()


def utc(moment: datetime) -> datetime:
    """A time as PostgreSQL returns it (timestamptz), as an aware UTC datetime."""
    return moment.astimezone(UTC)


def _as_is(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Dialect:
    """The few things shared SQL needs to know about the backend it runs on."""

    name: str
    mark: str  # the parameter marker: "?" (sqlite3) or "%s" (psycopg)
    time_in: Callable[[datetime], Any]  # a time as the backend stores it
    time_out: Callable[[Any], datetime]  # ... and back, as an aware UTC datetime
    text: Callable[[str | None], str | None]  # text as the backend can hold it

    def sql(self, statement: str) -> str:
        """`statement`, written with `?` markers, in this backend's markers."""
        return _marked(statement, self.mark)


@cache
def _marked(statement: str, mark: str) -> str:
    return statement if mark == "?" else statement.replace("?", mark)


SQLITE = Dialect("sqlite", "?", epoch, to_datetime, _as_is)
# PostgreSQL refuses NUL characters in text; timestamptz in and out
POSTGRES = Dialect("postgres", "%s", _as_is, utc, clean)
