"""Fixtures shared by the whole suite: real Mosquitto, PostgreSQL, a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import realparts
from tests.shipped_broker import ShippedBroker, shipped_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[realparts.Mosquitto]:
    """A private Mosquitto 2 on a free port with persistence; `broker.url` is its mqtt:// URL."""
    with realparts.mosquitto(tmp_path / "mosquitto") as b:
        yield b


@pytest.fixture
def deploy_broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    """Mosquitto running deploy/mosquitto/mosquitto.conf (TLS, ACL, passwords, persistence)."""
    with shipped_broker(tmp_path / "shipped-mosquitto") as b:
        yield b


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database (EDUGAP_TEST_POSTGRES names the server)."""
    with realparts.postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for each backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "edugap.db")
    else:
        with realparts.postgres_database() as url:
            yield url


@pytest.fixture
def free_port() -> int:
    return realparts.free_port()
