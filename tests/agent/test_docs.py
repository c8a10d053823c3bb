"""docs/agent.md and the deploy files cannot drift from the code."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from edugap.agent.cli import _parser
from edugap.agent.config import SECTIONS, all_keys, load
from tests import realparts

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "deploy" / "agent" / "edugap-agent.example.toml"
KEYS = list(all_keys())


def commands() -> list[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


@pytest.mark.parametrize("key", KEYS, ids=[k.dotted for k in KEYS])
def test_every_config_key_is_documented_with_its_environment_variable(key: object) -> None:
    dotted, env = key.dotted, key.env  # type: ignore[attr-defined]
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{dotted}` |")]
    assert rows, f"docs/agent.md has no table row for config key {dotted}"
    assert f"`{env}`" in rows[0], f"the row for {dotted} does not name {env}"


def test_every_documented_key_exists() -> None:
    documented = re.findall(r"^\| `([a-z_.]+)` \| `EDUGAP_AGENT_", DOC, flags=re.M)
    assert sorted(documented) == sorted(k.dotted for k in KEYS)


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented(command: str) -> None:
    assert f"| `edugap-agent {command}" in DOC, f"docs/agent.md has no row for {command}"


def test_example_config_is_valid_and_shows_every_key(tmp_path: Path) -> None:
    config = load(EXAMPLE, env={})
    assert config.school.school_id  # the example is enrolled
    text = EXAMPLE.read_text(encoding="utf-8")
    section = ""
    seen = set()
    for line in text.splitlines():
        if match := re.match(r"^\[(\w+)\]", line):
            section = match.group(1)
        elif match := re.match(r"^#? ?(\w+) = ", line):
            seen.add(f"{section}.{match.group(1)}" if section else match.group(1))
    missing = {k.dotted for k in KEYS} - seen
    assert not missing, f"the example config does not show {sorted(missing)}"
    assert set(SECTIONS) <= set(re.findall(r"^\[(\w+)\]", text, flags=re.M))


def test_linux_install_script_is_valid_bash() -> None:
    done = subprocess.run(
        ["bash", "-n", str(ROOT / "deploy/agent/install.sh")], capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_systemd_unit_is_valid() -> None:
    unit = ROOT / "deploy/agent/edugap-agent.service"
    text = unit.read_text()
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=always"):
        assert hardening in text
    problems = realparts.systemd_verify(unit, "/opt/edugap-agent/bin/edugap-agent")
    assert not problems, problems


def _traffic_section() -> str:
    start = DOC.index("## Traffic")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def test_traffic_figures_follow_the_default_schedule() -> None:
    """docs/agent.md's daily traffic: each row's count is what the default of the key it names
    gives in a day, its daily figure is bytes x count, and the total is their sum."""
    defaults = {k.dotted: k.default for k in KEYS}
    per_day_of = {"minutes": 24 * 60, "hours": 24, "seconds": 24 * 60 * 60}
    rows = re.findall(
        r"^\| [^|]+ \| ([\d,]+) B \| `([a-z_.]+)` = ([\d.]+)[^|]*?: ([\d,]+) a day \| "
        r"([\d.]+) MB \|$",
        _traffic_section(),
        flags=re.M,
    )
    assert len(rows) >= 4, "the traffic table has a row per kind of traffic"
    total = 0.0
    for each, key, shown, count, megabytes in rows:
        assert float(shown) == float(defaults[key]), f"{key}'s default is {defaults[key]}"
        unit = key.rsplit("_", 1)[-1] if key != "broker.keepalive" else "seconds"
        assert int(count.replace(",", "")) == round(per_day_of[unit] / float(shown)), key
        daily = int(each.replace(",", "")) * int(count.replace(",", "")) / 1e6
        assert abs(daily - float(megabytes)) <= 0.006, f"{key}: {daily:.3f} MB a day"
        total += float(megabytes)
    match = re.search(r"about ([\d.]+) MB a day\*\*", _traffic_section())
    assert match and abs(float(match.group(1)) - total) <= 0.03, f"rows sum to {total:.2f} MB"
