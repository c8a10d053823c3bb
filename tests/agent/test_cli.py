"""The `edugap-agent` command as a user runs it: help, once, speedtest, status."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edugap.agent.config import default_config_path
from edugap.protocol import messages as protocol
from tests import realparts
from tests.agent.agentproc import (
    AgentProcess,
    Listener,
    agent_command,
    clean_env,
    listener,
    run_agent,
    wait_for,
    write_config,
)

__all__ = ["listener", "run_agent"]  # fixtures used below

COMMANDS = ("run", "once", "speedtest", "status", "check-config")


def test_help_explains_every_command() -> None:
    done = agent_command("--help")
    assert done.returncode == 0
    for command in COMMANDS:
        assert f"\n  {command}" in done.stdout
        sub = agent_command(command, "--help")
        assert sub.returncode == 0 and "--config FILE" in sub.stdout


def decoded(stdout: str) -> list[protocol.AnyReport]:
    reports = []
    for item in json.loads(stdout):
        topic = protocol.topic_for(item["school_id"], item["device_id"], item["schema"][7:-2])
        reports.append(protocol.decode(topic, json.dumps(item).encode()))
    return reports


def test_once_without_any_config_file_prints_valid_reports(tmp_path: Path, free_port: int) -> None:
    if default_config_path().exists():
        pytest.skip(f"{default_config_path()} exists on this machine")
    # only the environment keeps the checks on this machine (no traffic leaves it)
    env = clean_env(
        EDUGAP_AGENT_AVAILABILITY_TARGETS=f"127.0.0.1:{free_port}",
        EDUGAP_AGENT_AVAILABILITY_TIMEOUT_SECONDS="0.5",
        EDUGAP_AGENT_BANDWIDTH_ROLE="false",
        EDUGAP_AGENT_STATE_DIR=str(tmp_path / "state"),
    )
    done = agent_command("once", env=env)
    assert done.returncode == 0, done.stderr
    reports = decoded(done.stdout)
    assert sorted(r.kind for r in reports) == ["heartbeat", "inventory"]
    assert {r.school_id for r in reports} == {"unenrolled"}
    heartbeat = next(r for r in reports if isinstance(r, protocol.Heartbeat))
    assert heartbeat.reachable is False  # nothing listens on that port
    assert not (tmp_path / "state").exists(), "once must not create state or send anything"

    done = agent_command("once", "--probe", "inventory", env=env)
    assert [r.kind for r in decoded(done.stdout)] == ["inventory"]


def test_once_bandwidth_and_speedtest_against_the_selfhosted_server(
    tmp_path: Path, speedtest_server: Any
) -> None:
    url, _ = speedtest_server()
    config = write_config(
        tmp_path / "agent.toml",
        {"state_dir": str(tmp_path / "state")},
        {
            "school": {"school_id": "79000001"},
            "bandwidth": {
                "backend": "selfhosted",
                "server_url": url,
                "timeout_seconds": 10,
                "seconds": 1,
                "streams": 2,
            },
            "availability": {"targets": ["127.0.0.1:9"]},
        },
    )
    done = agent_command("once", "--probe", "bandwidth", "--config", str(config))
    assert done.returncode == 0, done.stderr
    (report,) = decoded(done.stdout)
    assert isinstance(report, protocol.Bandwidth) and report.succeeded
    assert report.download_mbps and report.download_mbps > 0

    done = agent_command("speedtest", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "download:" in done.stdout and "Mbps" in done.stdout
    assert "download" in done.stderr  # the progress display
    assert "2 streams each way, 1 s each way" in done.stderr
    # each direction's end shows its figure
    assert re.search(r"download +100\.0% +[\d.]+ Mbps", done.stderr), done.stderr
    assert "bytes on the link" in done.stdout

    done = agent_command("speedtest", "--config", str(config), "--server-url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "error:" in done.stdout


def test_status_shows_outbox_last_publish_and_broker(
    run_agent: Any, broker: Any, listener: Listener
) -> None:
    agent: AgentProcess = run_agent()
    wait_for(lambda: agent.meta().get("acked_total", 0) >= 2, what="reports delivered")
    done = agent_command("status", "--config", str(agent.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "school:        79000001" in done.stdout
    assert "broker:        reachable" in done.stdout
    assert "last publish:  never" not in done.stdout
    assert "report(s) waiting" in done.stdout

    broker.stop()
    # once the agent has seen the broker go, no acknowledgement is left to read from its socket:
    # a report waiting from then on stays waiting
    wait_for(lambda: "disconnected from broker" in agent.log.read_text(), what="the disconnect")
    wait_for(lambda: agent.outbox(), what="reports waiting while the broker is down")
    done = agent_command("status", "--config", str(agent.config), "--timeout", "2")
    assert done.returncode == 1
    assert "NOT reachable" in done.stdout
    assert "0 report(s) waiting" not in done.stdout


def test_credentials_are_used_and_a_refusal_is_shown(tmp_path: Path) -> None:
    passwd = realparts.require_tool("mosquitto_passwd", "mosquitto")
    password_file = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(password_file), "79000001", "s3cret"], check=True)
    subprocess.run([passwd, "-b", str(password_file), "collector", "c0llect"], check=True)
    extra = f"allow_anonymous false\npassword_file {password_file}\n"
    with realparts.mosquitto(tmp_path / "mosquitto", extra_config=extra) as broker:
        # a collector is subscribed: without one, nothing counts as delivered
        collector = Listener(f"mqtt://collector:c0llect@127.0.0.1:{broker.port}")
        (tmp_path / "good").mkdir()
        good = AgentProcess(
            tmp_path / "good",
            broker.url,
            broker.port,
            broker={"username": "79000001", "password": "s3cret"},
        ).start()
        (tmp_path / "bad").mkdir()
        bad = AgentProcess(
            tmp_path / "bad",
            broker.url,
            broker.port,
            broker={"username": "79000001", "password": "wrong"},
        ).start()
        try:
            wait_for(
                lambda: good.meta().get("acked_total", 0) >= 2, what="delivery with a password"
            )
            wait_for(lambda: "as not authorised" in bad.log_text(), what="a logged refusal")
            assert bad.meta().get("acked_total", 0) == 0
            assert bad.outbox(), "refused reports stay in the outbox"
            done = agent_command("status", "--config", str(bad.config))
            assert done.returncode == 1
            assert "NOT reachable" in done.stdout and "as not authorised" in done.stdout
            assert "broker.password" in done.stdout  # the hint: what to check
            assert agent_command("status", "--config", str(good.config)).returncode == 0
        finally:
            good.stop()
            bad.stop()
            collector.close()
