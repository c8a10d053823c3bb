"""Availability probe against a real listening socket and a closed port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edugap.agent.probes import AvailabilityProbe
from edugap.protocol import messages as protocol
from edugap.protocol.messages import TargetCheck
from tests.agent.agentproc import agent_command, clean_env


@pytest.fixture
def listening() -> Iterator[str]:
    """host:port of a real TCP listener (the kernel completes connects from its backlog)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"127.0.0.1:{server.getsockname()[1]}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rounds_count_checks_loss_and_latency(listening: str, free_port: int) -> None:
    closed = f"127.0.0.1:{free_port}"
    clock = Clock()
    probe = AvailabilityProbe([listening, closed], timeout_s=1.0, monotonic=clock)

    assert [probe.check() for _ in range(3)] == [True, True, True]
    clock.now += 300
    summary = probe.summary()

    assert summary.reachable is True
    assert (summary.checks, summary.checks_ok) == (3, 3)
    assert summary.loss_pct == 50.0  # every connect to the closed port failed
    assert summary.latency_ms is not None and summary.latency_ms >= 0
    assert summary.period_seconds == 300
    up, down = summary.targets
    assert (up.target, up.checks, up.ok) == (listening, 3, 3) and up.latency_ms is not None
    assert down == TargetCheck(target=closed, checks=3, ok=0, latency_ms=None)

    empty = probe.summary()  # the previous call started a new period
    assert (empty.checks, empty.checks_ok, empty.loss_pct, empty.latency_ms) == (0, 0, None, None)


def test_nothing_answers(free_port: int) -> None:
    probe = AvailabilityProbe([f"127.0.0.1:{free_port}"], timeout_s=1.0)
    assert probe.check() is False
    summary = probe.summary(reset=False)
    assert summary.reachable is False and summary.latency_ms is None
    assert (summary.checks, summary.checks_ok, summary.loss_pct) == (1, 0, 100.0)
    assert probe.summary().checks == 1  # reset=False kept the period


def test_reachable_reflects_the_last_round(listening: str) -> None:
    host = listening.rsplit(":", 1)[0]
    probe = AvailabilityProbe([listening], timeout_s=1.0)
    assert probe.check()
    # a target that stops answering mid-period: the last round decides `reachable`
    refusing = AvailabilityProbe([f"{host}:1"], timeout_s=1.0)
    refusing.check()
    assert probe.summary().reachable and not refusing.summary().reachable


@pytest.mark.parametrize("target", ["example.org", "host:http", "host:0", ":443", "h:70000"])
def test_bad_targets_fail_at_start_naming_the_value(target: str) -> None:
    with pytest.raises(ValueError, match=repr(target).replace("[", r"\[")):
        AvailabilityProbe([target])


def test_ipv6_literal_target_parses() -> None:
    assert AvailabilityProbe(["[::1]:443"]).targets == ["[::1]:443"]


def test_by_default_the_heartbeat_checks_the_broker(listening: str, tmp_path: Path) -> None:
    """No targets configured: the checks go to the broker's host:port (the school's own
    collector side), not to third-party servers."""
    config = tmp_path / "agent.toml"
    config.write_text(f'[broker]\nurl = "mqtt://{listening}"\n')
    env = clean_env(EDUGAP_AGENT_STATE_DIR=str(tmp_path / "state"))
    done = agent_command("once", "--probe", "heartbeat", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)
    heartbeat = protocol.decode(
        protocol.topic_for(item["school_id"], item["device_id"], "heartbeat"),
        json.dumps(item).encode(),
    )
    assert isinstance(heartbeat, protocol.Heartbeat)
    assert heartbeat.reachable is True
    assert [(t.target, t.checks, t.ok) for t in heartbeat.targets] == [(listening, 1, 1)]
