"""The edges school IT meets first: what `once` costs in data, config files saved on Windows,
misspelt variables and bad arguments. Each gives a message to act on and an exit code, never a
traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import agent_command, clean_env, write_config


def selfhosted_config(tmp_path: Path, url: str, role: bool) -> Path:
    return write_config(
        tmp_path / "agent.toml",
        {"state_dir": str(tmp_path / "state")},
        {
            "school": {"school_id": "79000001"},
            "bandwidth": {
                "role": role,
                "backend": "selfhosted",
                "server_url": url,
                "timeout_seconds": 3,
            },
            "availability": {"targets": ["127.0.0.1:9"], "timeout_seconds": 0.5},
        },
    )


def test_once_moves_no_speed_test_bytes_unless_asked(
    tmp_path: Path, speedtest_server: Any
) -> None:
    """Even on the school's designated speed tester, `once` runs the test only by name."""
    url, server = speedtest_server()
    config = selfhosted_config(tmp_path, url, role=True)
    done = agent_command("once", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert sorted(r["schema"] for r in json.loads(done.stdout)) == [
        "edugap.heartbeat/1",
        "edugap.inventory/1",
    ]
    assert (server.bytes_served, server.bytes_received, server.downloads, server.uploads) == (
        0, 0, 0, 0,
    ), "once moved speed-test bytes without --probe bandwidth"  # fmt: skip

    done = agent_command("once", "--probe", "bandwidth", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert server.bytes_served > 0  # the counter sees a test when one runs


def test_once_exits_1_when_a_probe_failed(tmp_path: Path) -> None:
    config = selfhosted_config(tmp_path, "http://127.0.0.1:9/speedtest/", role=True)
    done = agent_command("once", "--probe", "bandwidth", "--config", str(config))
    assert done.returncode == 1
    (report,) = json.loads(done.stdout)
    assert report["error"]  # the failed report is still printed
    assert "refused the connection" in done.stderr and "--server-url" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "bom", [b"\xef\xbb\xbf", b"\xff\xfe"], ids=["utf8-bom", "utf16le-bom"]
)
def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path: Path, bom: bytes) -> None:
    """PowerShell 5.1 writes UTF-8 with a BOM (Set-Content -Encoding UTF8) or UTF-16
    (Out-File); both used to fail as 'Invalid statement (at line 1, column 1)'."""
    text = '[school]\nschool_id = "79000001"\n[schedule]\nheartbeat_minutes = 2\n'
    body = text.encode("utf-16-le") if bom == b"\xff\xfe" else text.encode()
    path = tmp_path / "agent.toml"
    path.write_bytes(bom + body)
    done = agent_command("check-config", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert "school 79000001" in done.stdout and "heartbeat every 2 min" in done.stdout


def test_a_windows_path_with_single_backslashes_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[broker]\nca_file = "C:\\ProgramData\\edugap\\ca.pem"\n', encoding="utf-8")
    done = agent_command("check-config", "--config", str(path))
    assert done.returncode == 2
    assert "needs each backslash doubled" in done.stderr and "single quotes" in done.stderr
    # a valid escape (\t) slips through TOML: the value then holds a tab, and is refused too
    path.write_text('state_dir = "C:\\temp\\new"\n', encoding="utf-8")
    done = agent_command("check-config", "--config", str(path))
    assert done.returncode == 2
    assert "config key 'state_dir'" in done.stderr and "backslash doubled" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_misspelt_environment_variable_is_an_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", {}, {"school": {"school_id": "79000001"}})
    env = clean_env(EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTE="5")
    done = agent_command("check-config", "--config", str(config), env=env)
    assert done.returncode == 2
    assert (
        "environment variable EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTE is not a known setting "
        "(did you mean EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES?)"
    ) in done.stderr
    env = clean_env(EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES="5")
    done = agent_command("check-config", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.org/", "http://"])
def test_a_bad_server_url_is_a_message_not_a_traceback(tmp_path: Path, url: str) -> None:
    done = agent_command("speedtest", "--backend", "selfhosted", "--server-url", url)
    assert done.returncode == 2
    assert f"--server-url has value '{url}': must be an http:// or https:// URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failed_speed_test_says_what_to_do_and_never_done(tmp_path: Path) -> None:
    config = selfhosted_config(tmp_path, "http://127.0.0.1:9/speedtest/", role=False)
    done = agent_command("speedtest", "--config", str(config))
    assert done.returncode == 1
    assert "failed" in done.stderr and "100.0%" not in done.stderr.split("failed")[-1]
    assert "done" not in done.stderr
    assert "error:     the speed-test server refused the connection" in done.stdout
    assert "Traceback" not in done.stderr


def test_enrol_takes_the_password_from_the_environment_or_a_file_never_argv(
    tmp_path: Path,
) -> None:
    config = tmp_path / "etc" / "agent.toml"
    args = ("enrol", "--config", str(config), "--school-id", "79000001",
            "--broker", "mqtts://mqtt.example:8883")  # fmt: skip
    done = agent_command(*args)  # no terminal, no file, no variable: nothing to read it from
    assert done.returncode == 2 and "no password" in done.stderr
    assert not config.exists()
    done = agent_command(*args, env=clean_env(EDUGAP_AGENT_BROKER_PASSWORD="from-env"))
    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert "username = '79000001'" in text and "password = 'from-env'" in text
    assert "role = false" in text  # not a speed tester unless said so

    password = tmp_path / "password"
    password.write_bytes(b"\xef\xbb\xbffrom-file\r\n")  # as Notepad saves it
    done = agent_command(*args, "--password-file", str(password), "--speed-tester")
    assert done.returncode == 2 and "exists: pass --force" in done.stderr
    done = agent_command(*args, "--password-file", str(password), "--speed-tester", "--force")
    assert done.returncode == 0, done.stderr
    assert "password = 'from-file'" in config.read_text() and "role = true" in config.read_text()

    # a user name that is not the school id is refused, and the good config stays
    done = agent_command(*args, "--username", "79000002", "--password-file", str(password),
                         "--force")  # fmt: skip
    assert done.returncode == 2 and "'broker.username' has value '79000002'" in done.stderr
    assert "password = 'from-file'" in config.read_text()
    assert "Traceback" not in done.stderr
    assert not list(config.parent.glob(".agent-*")), "a temporary file was left behind"
