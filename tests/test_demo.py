"""`edugap demo` end to end: what a first-time user sees; stopping leaves nothing behind."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from edugap.collector.demo.procs import find_mosquitto
from tests.realparts import free_port, missing

STARTUP_TIMEOUT = 150.0
# the demo is on this machine only: ignore any *_proxy environment variables
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoRun:
    """`edugap demo` as a subprocess, its output collected line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.dir = tmp_path / "demo"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "edugap.collector.cli", "demo", "--dir", str(self.dir)]
        argv += ["--port", str(self.port), "--schools", "200", *args]  # later --schools wins
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
        )
        self.lines: list[str] = []
        self.running = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "edugap demo is running" in line:
                self.running.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_running(self) -> list[int]:
        """Wait for the 'running' line; return the pids of every process the demo started."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.running.wait(0.2):
            assert self.proc.poll() is None, f"demo exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"demo did not start:\n{self.output}"
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def get(self, path: str) -> bytes:
        with _opener.open(self.base + path, timeout=30) as response:
            body: bytes = response.read()
            return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def demo(tmp_path: Path, *args: str) -> Iterator[DemoRun]:
    run = DemoRun(tmp_path, *args)
    try:
        yield run
    finally:
        run.kill()


def _alive(pids: list[int]) -> list[str]:
    """Descriptions of the pids that still run (zombies excepted)."""
    left = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return left


def _registry_ids(run: DemoRun) -> set[str]:
    with (run.dir / "registry.csv").open(encoding="utf-8") as f:
        return {row["school_id"] for row in csv.DictReader(f)}


def _check_visible(run: DemoRun) -> None:
    """The coverage page, the API and the shortage export show the simulated schools."""
    page = run.get("/").decode("utf-8")
    assert "<html" in page.lower()
    registry = _registry_ids(run)
    assert len(registry) == 200

    schools = run.get_json("/api/v1/schools?limit=500")
    assert schools["total"] == 200
    listed = {s["school_id"] for s in schools["schools"]}
    assert listed == registry
    classes = {s["connectivity"] for s in schools["schools"]}
    assert {"good", "moderate", "bad", "unknown"} <= classes

    text = run.get("/api/v1/shortages?format=csv").decode("utf-8-sig")
    rows = list(csv.DictReader(text.splitlines()))
    assert rows, "the shortage export is empty"
    assert {r["school_id"] for r in rows} <= registry
    assert any("bandwidth" in r["shortfalls"] for r in rows)

    metrics = run.get("/metrics").decode()
    assert "edugap_school_info{" in metrics

    assert "200 schools" in run.output
    assert "shortage CSV" in run.output and f"{run.base}/api/v1/shortages" in run.output


def _agent_schools(run: DemoRun) -> list[str]:
    match = re.search(r"real edugap-agent processes for (.+)", run.output)
    assert match, run.output
    return match.group(1).split(", ")


def _wait_live(run: DemoRun, school_ids: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {s: run.get_json(f"/api/v1/schools/{s}")["monitoring"] for s in school_ids}
        if set(states.values()) == {"live"}:
            return
        time.sleep(1)
    raise AssertionError(f"real agents' schools not live: {states}\n{run.output}")


def test_demo_shows_the_fleet_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        missing("mosquitto", "install the Debian package 'mosquitto'")
    with demo(tmp_path, "--duration", "600") as run:
        children = run.wait_running()
        assert len(children) >= 5, "expected broker, collector and 3 agents"
        assert "broker: mosquitto" in run.output
        _check_visible(run)
        # The three real agents were enrolled to schools that never reported: now they do.
        agents = _agent_schools(run)
        assert len(agents) == 3
        _wait_live(run, agents)

        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0, run.output
        assert _alive(children) == []
        assert run.lines[-1] == "stopped."


def test_demo_runs_on_the_embedded_broker_and_stops_after_duration(tmp_path: Path) -> None:
    with demo(tmp_path, "--broker-impl", "amqtt", "--duration", "10", "--agents", "1") as run:
        children = run.wait_running()
        assert "broker: amqtt broker" in run.output
        _check_visible(run)
        assert run.proc.wait(120) == 0, run.output
        assert _alive(children) == []


def test_demo_refuses_a_busy_port_and_leaves_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "edugap.collector.cli", "demo", "--dir", str(tmp_path / "d")]
        argv += ["--port", str(port), "--schools", "10", "--duration", "1"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert f"HTTP port {port} is already in use" in done.stdout
    mine = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert mine == []


def test_ctrl_c_while_starting_stops_everything(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        missing("mosquitto", "install the Debian package 'mosquitto'")
    # 3,000 schools take several seconds to publish: Ctrl-C arrives in the middle of it.
    with demo(tmp_path, "--schools", "3000") as run:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not any(line.startswith("collector:") for line in run.lines):
            assert run.proc.poll() is None, run.output
            assert time.monotonic() < deadline, run.output
            time.sleep(0.05)
        children = [p.pid for p in psutil.Process(run.proc.pid).children(recursive=True)]
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(60) == 130, run.output
        assert "interrupted" in run.output
        assert _alive(children) == []


def test_auto_falls_back_to_the_embedded_broker_without_mosquitto() -> None:
    from edugap.collector.demo.procs import DemoError, choose_broker

    assert choose_broker("auto", find=lambda: None) == ("amqtt", None)
    assert choose_broker("auto", find=lambda: "/usr/sbin/mosquitto") == (
        "mosquitto",
        "/usr/sbin/mosquitto",
    )
    assert choose_broker("amqtt", find=lambda: "/usr/sbin/mosquitto") == ("amqtt", None)
    with pytest.raises(DemoError, match="no mosquitto in PATH or /usr/sbin"):
        choose_broker("mosquitto", find=lambda: None)
