"""Real parts for tests: a private Mosquitto, PostgreSQL databases, Prometheus tools, Chromium.

A test whose real part is missing is skipped with a loud reason; with EDUGAP_REQUIRE_REAL_PARTS=1
(set by .ci/run) it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REQUIRE = os.environ.get("EDUGAP_REQUIRE_REAL_PARTS") == "1"


def missing(part: str, why: str) -> None:
    """Skip (or fail under CI) because a real part is not available."""
    message = f"REAL PART MISSING: {part}: {why}"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class Mosquitto:
    """One private Mosquitto 2 on a free port, with persistence in its own directory.

    `extra_config` lines are appended to the generated config (ACL, TLS, limits...).
    `stop()` and `start()` keep the port and the persistence file, so a test can take the
    broker away and bring it back.
    """

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None) -> None:
        exe = find_mosquitto()
        if exe is None:
            missing("mosquitto", "install the Debian package 'mosquitto'")
        self.exe = exe or "mosquitto"
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # started as root, mosquitto switches to user 'mosquitto', which cannot write the
            # test's private directory: no persistence file, no log. Stay as the caller.
            + ("user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
            + "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + extra_config
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), so the persistence file is written."""
        end_process(self.proc, timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def end_process(
    proc: subprocess.Popen[Any] | None, signum: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Send `signum` to a running process and wait; SIGKILL if it outstays `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signum)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def mosquitto(workdir: Path, extra_config: str = "") -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir, extra_config).start()
    try:
        yield broker
    finally:
        broker.stop()


def postgres_admin_url() -> str:
    return os.environ.get("EDUGAP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    try:
        import psycopg
    except ImportError:
        missing("postgresql", "psycopg is not installed (pip install 'edugap[collector]')")
        raise
    admin = postgres_admin_url()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        missing("postgresql", f"cannot connect to {admin} (set EDUGAP_TEST_POSTGRES): {e}")
        raise
    name = f"edugap_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def systemd_verify(unit: Path, program: str) -> list[str]:
    """What `systemd-analyze verify` says about a unit file, but that `program` (the
    ExecStart binary, not installed on this machine) is missing."""
    analyze = require_tool("systemd-analyze", "systemd")
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    return [line for line in done.stderr.splitlines() if line.strip() and program not in line]


def require_tool(name: str, package: str) -> str:
    """Path of a command-line tool, or skip/fail naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        missing(name, f"install the Debian package '{package}'")
        raise AssertionError("unreachable")
    return path


class CountingProxy:
    """A TCP forwarder that counts the connections made through it (each one a connect try).
    It can stand for a network that fails: cut() drops every connection through it and refuses
    new ones (still counted) until restore()."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.connections = 0
        self.up = True
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if not self.up:
                    raise OSError("link cut")
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection through the proxy and refuse new ones until restore()."""
        self.up = False
        for pair in self.pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.pairs.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.server.close()
