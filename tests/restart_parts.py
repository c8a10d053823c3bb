"""A real agent and real collectors for the restart tests, on the shipped broker.

- `ServiceAgent`: the agent service itself (`edugap.agent.service.Service`: outbox, publisher,
drain,
  its loop) on a thread of the test process, with a school's credentials over TLS. The test
  adds reports to its outbox through a second connection, as the agent's probes do, at the rate
  it chooses; what the service does with them is exactly what it does in the field.
- `CollectorProcess`: `edugap serve --config FILE` as a process, with the collector's
  credentials on the broker's private listener; started, stopped (SIGTERM) or killed.
- `stored_devices`: what the store holds, to count sent against stored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from edugap.agent.config import load
from edugap.agent.outbox import FILE_NAME, Outbox
from edugap.agent.service import Service
from edugap.collector.store import open_store
from edugap.protocol import messages as protocol
from tests import realparts
from tests.agent.agentproc import wait_for, write_config
from tests.collector.reports import bandwidth
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker

ROOT = Path(__file__).resolve().parents[1]


def reports(n: int, school: str = "HN-A", prefix: str = "r") -> list[protocol.Bandwidth]:
    """`n` speed-test reports of `school`, each from its own device (`<prefix><i>`), so the
    stored rows name exactly which reports arrived."""
    now = protocol.utcnow()
    return [bandwidth(school, f"{prefix}{i:05d}", at=now) for i in range(n)]


def stored_devices(db_url: str, since: datetime) -> Counter[str]:
    """device id -> stored speed tests since `since` (a count above 1 is a duplicate)."""
    store = open_store(db_url)
    try:
        return Counter(r.device_id for r in store.bandwidth_since(since))
    finally:
        store.close()


class ServiceAgent:
    """`edugap-agent run`'s service on a thread, as school `school`, fed reports by the test."""

    def __init__(
        self,
        workdir: Path,
        broker: ShippedBroker,
        school: str = "HN-A",
        *,
        mqtt_version: int = 5,
        per_second: float = 0.0,
        max_inflight: int = 100,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        settings = broker.settings(school)
        rare = 10_000.0  # the probes' own reports: once at start at most
        path = write_config(
            workdir / "agent.toml",
            {"state_dir": str(workdir / "state")},
            {
                "school": {"school_id": school},
                "broker": {
                    "url": f"mqtts://127.0.0.1:{settings.port}",
                    "username": school,
                    "password": settings.password,
                    "ca_file": str(broker.ca),
                    "mqtt_version": mqtt_version,
                    "keepalive": 5,
                    "reconnect_min_seconds": 1,
                    "reconnect_max_seconds": 2,
                },
                "schedule": {
                    "heartbeat_minutes": rare,
                    "availability_minutes": rare,
                    "inventory_hours": rare,
                },
                "bandwidth": {"role": False},
                "availability": {"targets": [f"127.0.0.1:{settings.port}"]},
                "outbox": {
                    "drain_per_second": per_second,
                    "max_inflight": max_inflight,
                    "hold_retry_min_seconds": 0.5,
                    "hold_retry_max_seconds": 2.0,
                },
            },
        )
        self.service = Service(load(path, env={}))
        # the probes' side of the outbox: a second connection, as WAL allows
        self.feed_outbox = Outbox(Path(self.service.config.state_dir) / FILE_NAME)
        self.thread = threading.Thread(target=self.service.run, name=f"agent-{school}")
        self.fed = 0  # reports added so far

    def start(self) -> ServiceAgent:
        self.thread.start()
        return self

    def add(self, made: Sequence[protocol.Report]) -> None:
        for report in made:
            self.feed_outbox.add(report)
            self.fed += 1

    def feed(self, made: Sequence[protocol.Report], per_second: float) -> threading.Thread:
        """Add `made` to the outbox at about `per_second` on a thread; returns the thread."""

        def run() -> None:
            started = time.monotonic()
            for n, report in enumerate(made):
                ahead = n / per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                self.add([report])

        thread = threading.Thread(target=run, name="agent-feed")
        thread.start()
        return thread

    def depth(self) -> int:
        return self.feed_outbox.depth()

    def held(self) -> bool:
        """True while the broker says no collector is subscribed (the drain holds)."""
        return self.feed_outbox.stats().held_since is not None

    def settled(self) -> bool:
        """Every report delivered, or held back for want of a subscriber."""
        return self.depth() == 0 or self.held()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.service.stop()
            self.thread.join(30)
        self.feed_outbox.close()


class CollectorProcess:
    """`edugap serve` from a config file: own or shared subscription, SQLite or PostgreSQL."""

    def __init__(
        self,
        workdir: Path,
        broker: ShippedBroker,
        db_url: str,
        *,
        name: str = "collector-1",
        shared: bool = False,
        user: str = COLLECTOR_USER,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.port = realparts.free_port()
        password = broker.users[user]
        self.config = write_config(
            workdir / "collector.toml",
            {},
            {
                "broker": {"url": f"mqtt://{user}:{password}@127.0.0.1:{broker.plain_port}"},
                "ingest": {"name": name, "shared": shared, "batch_seconds": 0.05},
                "db": {"url": db_url},
                "http": {"listen": f"127.0.0.1:{self.port}"},
                "snapshot": {"interval_seconds": 2.0},
            },
        )
        self.config.chmod(0o600)  # it holds the collector's password
        self.log = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> CollectorProcess:
        """Start; with `wait_ready`, until /readyz says connected, subscribed and evaluated."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edugap.collector.cli", "serve", "--config",
                 str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait_ready:
            wait_for(self.ready, timeout=60, what="edugap serve to be ready")
        return self

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """SIGTERM: store and acknowledge what it holds, then leave (the session stays)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        realparts.end_process(self.proc, signum, timeout=30)
        self.proc = None

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `edugap ARGS... --config` with this collector's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "edugap.collector.cli", *args[:1], "--config", str(self.config),
             *args[1:]],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def cleanup(*parts: Any) -> None:
    """Stop agents and collectors, whatever state a failed test left them in."""
    for part in parts:
        with contextlib.suppress(Exception):
            part.stop()
