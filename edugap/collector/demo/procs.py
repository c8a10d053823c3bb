"""Child processes of `edugap demo` (broker, collector, agents): start, watch, stop, leave none.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the demo,
which then stops the children in reverse order of start (agents, collector, broker) and kills
the whole group of any child that does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

BrokerImpl = Literal["auto", "mosquitto", "amqtt"]


class DemoError(RuntimeError):
    """A part of the demo could not start; the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, chars: int = 1500) -> str:
    """The end of a log file, for an error message; "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Child:
    """One started process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            process_group=0,  # its own group: terminal signals go to the demo only
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return log_tail(self.log_path)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop; kill its whole process group if it does not in time."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # process_group=0 made the child its group's leader
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever it started (and left) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None


@dataclass
class Children:
    """Children in start order; `stop_all` stops them newest first."""

    started: list[Child] = field(default_factory=list)

    def start(self, child: Child) -> Child:
        self.started.append(child.start())
        return child

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()

    def dead(self) -> list[Child]:
        return [c for c in self.started if not c.running()]


class Interrupted(DemoError):
    """The user asked the demo to stop (Ctrl-C, SIGTERM) while it was starting."""


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    child: Child | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Poll `check` until true; DemoError naming `what` (and the child's log) otherwise.

    A set `cancel` event ends the wait at once with Interrupted.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            raise Interrupted(f"interrupted while waiting for {what}")
        if check():
            return
        if child is not None and not child.running():
            raise DemoError(f"{child.name} exited while waiting for {what}:\n{child.log_tail()}")
        time.sleep(0.1)
    tail = f"\n{child.log_tail()}" if child else ""
    raise DemoError(f"timed out after {timeout:g}s waiting for {what}{tail}")


def find_mosquitto() -> str | None:
    """Mosquitto from PATH, or the Debian package's /usr/sbin/mosquitto (not on PATH for users)."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def choose_broker(
    impl: BrokerImpl, find: Callable[[], str | None] = find_mosquitto
) -> tuple[Literal["mosquitto", "amqtt"], str | None]:
    """The broker to run and, for Mosquitto, its executable."""
    if impl == "amqtt":
        return "amqtt", None
    exe = find()
    if exe:
        return "mosquitto", exe
    if impl == "mosquitto":
        raise DemoError("--broker-impl mosquitto: no mosquitto in PATH or /usr/sbin")
    return "amqtt", None


def broker_child(impl: BrokerImpl, workdir: Path, port: int) -> tuple[Child, int]:
    """A broker child listening on 127.0.0.1:port, and the MQTT version its clients must use."""
    kind, exe = choose_broker(impl)
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "mosquitto":
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # no persistence: each demo starts afresh, and Mosquitto started as root drops to
            # the `mosquitto` user, which could not write a file in the user's demo directory
            "persistence false\n"
            # the collector's session may hold the whole simulated fleet while it catches up
            "max_queued_messages 10000000\n"
            "max_inflight_messages 1000\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
            encoding="utf-8",
        )
        argv = [exe or "mosquitto", "-c", str(conf)]
        return Child("mosquitto", argv, workdir / "mosquitto.log"), 5
    argv = [sys.executable, "-m", "edugap.collector.demo.amqtt_broker", "--port", str(port)]
    return Child("amqtt broker", argv, workdir / "amqtt.log"), 3


def edugap_argv(*args: str) -> list[str]:
    """argv running the `edugap` command with this interpreter (works without PATH set up)."""
    return [sys.executable, "-m", "edugap.collector.cli", *args]


def agent_argv(*args: str) -> list[str]:
    """argv running `edugap-agent` with this interpreter."""
    return [sys.executable, "-m", "edugap.agent.cli", *args]


def run_once(argv: Sequence[str], log_path: Path, what: str, timeout: float = 300.0) -> None:
    """Run a command to completion, appending its output to log_path; DemoError on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise DemoError(
            f"{what} failed (exit {done.returncode}); see {log_path}:\n{log_tail(log_path)}"
        )
