"""The real `edugap-agent` as a subprocess, and a real MQTT listener, for the runtime tests.

Test modules import the fixtures from here (`from tests.agent.agentproc import run_agent`).
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edugap.agent.outbox import FILE_NAME
from edugap.protocol import messages as protocol
from edugap.protocol.mqtt import connect_properties, new_client, parse_broker_url
from tests import realparts

AGENT = [sys.executable, "-m", "edugap.agent.cli"]
ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` (a bound, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, top: dict[str, Any], sections: dict[str, dict[str, Any]]) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any EDUGAP_AGENT_* variable from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDUGAP_AGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def agent_command(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `edugap-agent ARGS...` to completion and capture its output."""
    return subprocess.run(
        [*AGENT, *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        cwd=ROOT,
        timeout=timeout,
    )


class AgentProcess:
    """One real `edugap-agent run` with a temp config: short intervals, no speed tests."""

    def __init__(self, tmp: Path, broker_url: str, port: int, **overrides: dict[str, Any]) -> None:
        self.dir = tmp
        self.state_dir = tmp / "state"
        sections: dict[str, dict[str, Any]] = {
            "school": {"school_id": "79000001"},
            "broker": {
                "url": broker_url,
                "reconnect_min_seconds": 1,
                "reconnect_max_seconds": 1,
                "keepalive": 5,
            },
            "schedule": {
                "heartbeat_minutes": 0.005,  # 0.3 s
                "availability_minutes": 0.005,
                "inventory_hours": 1.0,
            },
            "bandwidth": {"role": False},
            "availability": {"targets": [f"127.0.0.1:{port}"], "timeout_seconds": 0.5},
            "outbox": {"drain_per_second": 0},
        }
        for name, values in overrides.items():
            sections.setdefault(name, {}).update(values)
        self.config = write_config(
            tmp / "agent.toml", {"state_dir": str(self.state_dir), "log_level": "debug"}, sections
        )
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*AGENT, "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=ROOT,
            )
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # not left behind; the log says where it was
            tail = self.log.read_text(errors="replace").splitlines()[-30:]
            raise AssertionError(
                f"agent did not exit within 15 s of signal {signum}; its log ends:\n"
                + "\n".join(tail)
            ) from None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush; what is on disk is all that survives."""
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def _query(self, sql: str) -> list[Any]:
        """Rows of a read-only query on the agent's outbox; [] until it exists and is migrated."""
        path = self.state_dir / FILE_NAME
        if not path.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return []

    def outbox(self) -> list[tuple[str, str]]:
        """(report_id, topic) of every row waiting in the outbox, oldest first (read-only)."""
        return self._query("SELECT report_id, topic FROM outbox ORDER BY seq")

    def outbox_at_least(self, count: int) -> list[tuple[str, str]] | None:
        """The outbox rows when there are at least `count`, else None (for wait_for)."""
        rows = self.outbox()
        return rows if len(rows) >= count else None

    def meta(self) -> dict[str, Any]:
        """The outbox's counters (dropped_pending, dropped_total, acked_total...)."""
        return dict(self._query("SELECT key, value FROM meta"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Listener:
    """A real MQTT subscriber with a persistent session, so nothing is missed across restarts."""

    def __init__(
        self,
        url: str,
        topic: str = "edugap/v1/+/+/+",  # what a collector subscribes to (no echo topics)
        client_id: str = "test-listener",
        mqtt_version: int = 5,
    ) -> None:
        self.settings = parse_broker_url(url, mqtt_version=mqtt_version)
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.received: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.client = new_client(self.settings, client_id, clean_start=False)
        self.client.reconnect_delay_set(1, 1)

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            client.subscribe(topic, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: Any, rcs: Any, props: Any) -> None:
            self.ready.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            self.messages.put((msg.topic, msg.payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect_async(
            self.settings.host, self.settings.port, **connect_properties(self.settings, False)
        )
        self.client.loop_start()
        if not self.ready.wait(10):
            raise AssertionError(f"listener could not subscribe on {url}")

    def poll(self) -> list[tuple[str, bytes, bool]]:
        while True:
            try:
                self.received.append(self.messages.get_nowait())
            except queue.Empty:
                return self.received

    def reports(self, kind: str | None = None) -> list[protocol.AnyReport]:
        """Every decoded report received so far (decode() must accept each one)."""
        out = []
        for topic, payload, _ in self.poll():
            report = protocol.decode(topic, payload)
            if kind is None or report.kind == kind:
                out.append(report)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def run_agent(tmp_path: Path, broker: Any) -> Iterator[Callable[..., AgentProcess]]:
    """Start real agents against the test broker; all are stopped at the end."""
    started: list[AgentProcess] = []

    def start(name: str = "agent", **overrides: dict[str, Any]) -> AgentProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        agent = AgentProcess(workdir, broker.url, broker.port, **overrides).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def listener(broker: Any) -> Iterator[Listener]:
    """A subscriber to every report topic on the test broker, ready before the test starts."""
    sub = Listener(broker.url)
    yield sub
    sub.close()


def make_certificates(workdir: Path) -> dict[str, Path]:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    openssl = realparts.require_tool("openssl", "openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    names = ("ca", "ca_key", "server", "server_key", "client", "client_key")
    paths = {n: workdir / f"{n}.pem" for n in names}
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    new_key = ("-newkey", "rsa:2048", "-nodes")
    run("req", "-x509", *new_key, "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(paths["ca_key"]), "-out", str(paths["ca"]))  # fmt: skip
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=79000001")):
        csr = workdir / f"{name}.csr"
        run("req", *new_key, "-subj", subject, "-keyout", str(paths[f"{name}_key"]),
            "-out", str(csr))  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey",
            str(paths["ca_key"]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(paths[name]))  # fmt: skip
    return paths
