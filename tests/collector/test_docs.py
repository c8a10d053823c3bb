"""Docs that cannot drift: every config key, CLI command, metric, API route and alert rule must be
documented under docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edugap.collector.cli import COMMANDS, build_parser
from edugap.collector.config import SETTINGS, Setting
from edugap.collector.model import IngestStats
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.openapi import openapi_document
from tests.collector.sample import national

DOCS = Path(__file__).parents[2] / "docs"
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules" / "edugap-rules.yml"


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_config_key_is_documented(setting: Setting) -> None:
    text = doc("configuration.md")
    row = next((line for line in text.splitlines() if line.startswith(f"| `{setting.name}` |")),
               None)  # fmt: skip
    assert row is not None, f"docs/configuration.md has no row for '{setting.name}'"
    assert f"`{setting.env}`" in row, f"{setting.env} missing from the row of {setting.name}"
    if setting.cli:
        assert f"`{setting.cli}`" in row, f"{setting.cli} missing from the row of {setting.name}"


def test_configuration_doc_lists_no_removed_keys() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", doc("configuration.md"), re.M))
    assert documented == {s.name for s in SETTINGS}


def test_every_serve_option_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    serve = sub.choices["serve"]  # type: ignore[index]
    text = doc("configuration.md")
    for action in serve._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in text, f"edugap serve {flag} is not in docs/configuration.md"


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    available = set(sub.choices)  # type: ignore[arg-type]
    assert "serve" in available and available <= set(COMMANDS)
    text = all_docs()
    for name in sorted(available):
        assert f"edugap {name}" in text, f"`edugap {name}` is not documented under docs/"


def exposed_families() -> set[str]:
    holder = SnapshotHolder()
    holder.publish(national(30, provinces=2), 0.1)
    # metrics.school_detail serves every family (the default a subset of them)
    body = b"".join(Exposition(holder, IngestStats(), school_detail=True).text()).decode()
    return set(re.findall(r"^# TYPE (\S+) ", body, re.M))


def test_every_metric_is_documented() -> None:
    text = doc("metrics.md")
    families = exposed_families()
    assert len(families) > 40
    for name in sorted(families):
        assert f"| `{name}` |" in text, f"metric {name} has no row in docs/metrics.md"


def test_metrics_doc_lists_no_removed_metrics() -> None:
    documented = set(re.findall(r"^\| `(edugap_[a-z0-9_]+)` \|", doc("metrics.md"), re.M))
    assert documented == exposed_families()


def test_every_rule_and_alert_is_documented() -> None:
    text = doc("metrics.md")
    rules = RULES.read_text(encoding="utf-8")
    names = re.findall(r"(?:record|alert): (\S+)", rules)
    assert len(names) > 10
    for name in names:
        assert name in text, f"rule {name} is not in docs/metrics.md"


def test_every_route_is_documented() -> None:
    text = doc("api.md")
    for path in openapi_document()["paths"]:
        shown = path.replace("{path}", "").rstrip("/") or "/"
        assert f"`GET {path}`" in text or f"`{shown}" in text, f"{path} is not in docs/api.md"
