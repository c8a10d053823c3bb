"""What several commands share: the `--db` option, its default, and opening an existing store."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edugap.collector.config import default_db_url
from edugap.collector.model import Store, StoreError
from edugap.protocol.redact import remember


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """--db with the same default as `edugap serve` ($EDUGAP_DB_URL, $EDUGAP_DB, ./edugap.db)."""
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="store: SQLite file path or postgresql:// URL "
        "(default: $EDUGAP_DB_URL, else $EDUGAP_DB, else edugap.db)",
    )


def db_url(args: argparse.Namespace) -> str:
    """--db, else $EDUGAP_DB_URL (serve's variable for db.url), else $EDUGAP_DB, else edugap.db."""
    url = str(args.db) if args.db else (os.environ.get("EDUGAP_DB_URL") or default_db_url())
    remember(url)  # its password stays out of every message and log line from here on
    return url


def open_store(url: str, *, create: bool = True) -> Store:
    """The store at `url` (imported late so `edugap --help` stays fast).

    With create=False a missing SQLite file is an error instead of a new empty store, so a
    mistyped --db does not quietly read nothing.
    """
    from edugap.collector.store import open_store as _open_store
    from edugap.collector.store import scheme_of, sqlite_path

    if not create and scheme_of(url) == "sqlite" and not Path(sqlite_path(url)).exists():
        raise StoreError(
            f"no store at {url}: import the registry first (edugap schools import FILE --db "
            f"{url}) or give --db / EDUGAP_DB"
        )
    return _open_store(url)
