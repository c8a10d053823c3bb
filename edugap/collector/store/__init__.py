"""Store backends, chosen by URL: a file path or sqlite:///path (SQLite), postgresql://... .

Each backend is one module registered by URL scheme in `BACKENDS`; `open_store` runs the
backend's numbered migrations before returning, so a store is always at the current schema.

May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.collectors` (the
registry of collectors it keeps); never ingest, the policy,
serving, exports, the registry importer or the demo.
"""

from __future__ import annotations

import importlib
from typing import Any

from edugap.collector.model import Store, StoreError
from edugap.protocol.redact import redact

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.collectors",
)

# URL scheme -> "module:factory"; a bare path (no scheme) is SQLite.
BACKENDS: dict[str, str] = {
    "sqlite": "edugap.collector.store.sqlite:SqliteStore",
    "postgresql": "edugap.collector.store.postgres:PostgresStore",
    "postgres": "edugap.collector.store.postgres:PostgresStore",
}

__all__ = ["BACKENDS", "StoreError", "open_store", "redact", "sqlite_path"]


def scheme_of(url: str) -> str:
    """The backend scheme of a store URL; a plain file path is 'sqlite'."""
    if "://" not in url:
        return "sqlite"
    return url.split("://", 1)[0].lower()


def sqlite_path(url: str) -> str:
    """The file path of a SQLite store URL (`sqlite:///abs/path`, `sqlite:///rel`, or a path)."""
    if "://" not in url:
        return url
    rest = url.split("://", 1)[1]
    # sqlite:////abs/path -> /abs/path ; sqlite:///rel/path -> rel/path (SQLAlchemy's rule)
    if rest.startswith("/"):
        rest = rest[1:]
    if not rest:
        raise StoreError(f"store URL {url!r} names no database file")
    return rest


def open_store(url: str, **options: Any) -> Store:
    """Open (and migrate) the store at `url`; raises StoreError naming the URL on failure.

    `options` go to the backend (e.g. `rejects_kept=5000`).
    """
    if not url:
        raise StoreError("store URL is empty: give a SQLite file path or a postgresql:// URL")
    scheme = scheme_of(url)
    target = BACKENDS.get(scheme)
    if target is None:
        raise StoreError(
            f"store URL {redact(url)!r}: unknown scheme {scheme!r}; "
            f"use a file path, sqlite:///path or postgresql://"
        )
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    store: Store = factory(url, **options)
    return store
