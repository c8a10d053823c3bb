"""The shipped collector unit: valid, sandboxed like the agent's, rated OK or better by systemd.

No systemd runs here as PID 1, so the unit is never started in a test: `systemd-analyze
verify` checks it parses and `systemd-analyze security --offline=true` rates its sandbox.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edugap.collector.config import SETTINGS_BY_NAME
from edugap.collector.serving.httpguard import connection_limit
from tests import realparts

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "collector" / "edugap-collector.service"
AGENT_UNIT = ROOT / "deploy" / "agent" / "edugap-agent.service"
RATINGS = ("PERFECT", "SAFE", "OK")  # systemd's scale goes on: MEDIUM, EXPOSED, UNSAFE
# what the agent unit has that does not fit a server: it reads every mounted disk's free space
# (ProtectHome=read-only), talks netlink for interface speeds, and is kept small on a lab PC
AGENT_ONLY = {"ProtectHome", "RestrictAddressFamilies", "MemoryMax", "TasksMax", "Nice"}


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_valid() -> None:
    problems = realparts.systemd_verify(UNIT, "/opt/edugap/bin/edugap")
    assert not problems, problems


def test_systemd_rates_the_unit_ok_or_better() -> None:
    analyze = realparts.require_tool("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "security", "--offline=true", str(UNIT)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
    assert match, done.stdout + done.stderr
    exposure, rating = float(match.group(1)), match.group(2)
    assert rating in RATINGS, f"exposure {exposure} {rating}:\n{done.stdout}"


def test_stores_are_private_and_descriptors_plenty() -> None:
    unit = directives(UNIT)
    assert unit["UMask"] == ["0077"]  # the SQLite store and its WAL: not world-readable
    # the unit's descriptors hold the default connection limit without lowering it
    default = SETTINGS_BY_NAME["http.max_connections"].default
    assert isinstance(default, int)
    assert connection_limit(default, int(unit["LimitNOFILE"][0])) == default
    assert unit["User"] == ["edugap"] and unit["StateDirectoryMode"] == ["0700"]


def test_unit_has_every_sandbox_setting_of_the_agent_unit() -> None:
    agent, collector = directives(AGENT_UNIT), directives(UNIT)
    service = AGENT_UNIT.read_text(encoding="utf-8").split("[Service]")[1].split("[Install]")[0]
    hardening = service.split("# Hardening", 1)[1]
    keys = {line.partition("=")[0] for line in hardening.splitlines() if "=" in line}
    keys = {k for k in keys if not k.startswith("#")} - AGENT_ONLY
    assert keys, "the agent unit has no hardening section"
    missing = {k: agent[k] for k in keys if collector.get(k) != agent[k]}
    assert not missing, f"the collector unit lacks or differs from the agent's {missing}"


def test_operations_doc_points_to_the_unit() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "deploy/collector/edugap-collector.service" in doc
    assert "[Service]" not in doc  # no second, drifting copy of the unit
