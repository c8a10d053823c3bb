"""The real parts a bench runs: a private Mosquitto and PostgreSQL databases.

They are the tests' own (tests/realparts.py, tests/shipped_broker.py), so a bench runs the
very broker and database a test of the same thing would:

- `mosquitto(workdir, extra_config)`: Mosquitto on a free port, anonymous, persistence in
  workdir, `extra_config` lines appended (limits, a TLS listener...); `Mosquitto` to stop and
  start it by hand;
- `shipped_broker(workdir, schools)`: deploy/mosquitto/mosquitto.conf as shipped (a TLS
  listener for schools with their own passwords and the per-school ACL, persistence, a plain
  listener for collectors) on free ports;
- `postgres_database()`: a fresh database on the machine's PostgreSQL (EDUGAP_TEST_POSTGRES or
  127.0.0.1:5432), dropped on the way out.

A part that is missing ends the bench naming it (see `harness.main`).
"""

from __future__ import annotations

from tests.realparts import Mosquitto, mosquitto, postgres_admin_url, postgres_database
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker, shipped_broker

__all__ = [
    "COLLECTOR_USER",
    "Mosquitto",
    "ShippedBroker",
    "mosquitto",
    "postgres_admin_url",
    "postgres_database",
    "shipped_broker",
]
