"""Against the real Prometheus tools: promtool lints the populated /metrics, tests the rules and
checks the deploy config; a real Prometheus scrapes the collector's shards and answers PromQL."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edugap.collector.model import IngestStats, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.store import open_store
from tests import realparts
from tests.collector.prom_helpers import (
    DEPLOY,
    collector_url,
    prometheus,
    prometheus_config,
    query,
    with_token,
)
from tests.collector.sample import national, school, snapshot


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "prom.db"))
    yield s
    s.close()


def test_promtool_finds_nothing_wrong_with_populated_metrics(store: Store) -> None:
    promtool = realparts.require_tool("promtool", "prometheus")
    with collector_url(store, national(500, provinces=6)) as url:
        for query in ("", "?province=Điện Biên", "?collector=1"):
            body = httpx.get(f"{url}/metrics{query}").content
            assert b"edugap_" in body
            result = subprocess.run(
                [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60
            )
            problems = (result.stdout + result.stderr).decode()
            assert result.returncode == 0 and problems.strip() == "", problems


def test_promtool_rule_tests_pass() -> None:
    promtool = realparts.require_tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", "edugap-rules.test.yml"],
        cwd=DEPLOY / "rules",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_cover_every_rule_and_alert() -> None:
    import yaml  # type: ignore[import-untyped]

    rules = yaml.safe_load((DEPLOY / "rules" / "edugap-rules.yml").read_text(encoding="utf-8"))
    tests = yaml.safe_load((DEPLOY / "rules" / "edugap-rules.test.yml").read_text("utf-8"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested_exprs = {t["expr"] for case in tests["tests"] for t in case.get("promql_expr_test", [])}
    firing = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert recorded - tested_exprs == set(), "recording rules without a promql_expr_test"
    assert alerts - firing == set(), "alerts without a test in which they fire"


def test_deploy_config_is_valid_discovers_provinces_and_carries_the_token_everywhere(
    tmp_path: Path,
) -> None:
    promtool = realparts.require_tool("promtool", "prometheus")
    config = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    token = tmp_path / "token"
    token.write_text("t0ken-for-prometheus\n")
    (tmp_path / "rules").mkdir()
    for name in ("edugap-rules.yml",):
        (tmp_path / "rules" / name).write_text((DEPLOY / "rules" / name).read_text("utf-8"))
    for text in (config, with_token(config, token)):
        (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
        result = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    import yaml  # type: ignore[import-untyped]

    jobs = yaml.safe_load(with_token(config, token))["scrape_configs"]
    assert {j["job_name"] for j in jobs} == {"edugap-collector", "edugap-province"}
    for job in jobs:  # every job, and the discovery itself, uses the token once uncommented
        assert job["authorization"] == {"type": "Bearer", "credentials_file": str(token)}
    province = next(j for j in jobs if j["job_name"] == "edugap-province")
    assert province["http_sd_configs"][0]["url"] == "http://collector:8080/metrics/targets"
    assert province["http_sd_configs"][0]["authorization"] == {
        "type": "Bearer", "credentials_file": str(token)
    }
    # no hand-kept list of provinces
    assert "static_configs" not in province and "Cao Bằng" not in config


def test_real_prometheus_scrapes_discovered_shards_and_joins_school_info(
    store: Store, tmp_path: Path
) -> None:
    snap = snapshot([
        school("HN-1", "Thành phố Hà Nội", name="Trường Tiểu học Ba Đình", download=12.5),
        school("HN-2", "Thành phố Hà Nội", download=48.0, connectivity="good", shortfalls=()),
        school("CB-1", "Cao Bằng", commune="Xã Bảo Lâm", download=0.6, connectivity="bad"),
        school("HG-1", "Hà Giang", download=3.0),  # not one of the 34: the collector's shard
        school("ZZ-9", registered=False),
    ])  # fmt: skip
    token = tmp_path / "token"
    token.write_text("m3trics-token\n")
    with collector_url(store, snap, metrics_token="m3trics-token") as url:
        host_port = url.removeprefix("http://")
        template = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
        workdir = tmp_path / "prometheus"
        with prometheus(workdir, prometheus_config(template, host_port, token)) as base:
            join = (
                "edugap_school_download_mbps * on (school_id) "
                "group_left (name, commune) edugap_school_info"
            )
            rules_ready = "edugap:schools:sum_by_connectivity"
            # rules run on their own schedule: wait until they have seen every shard
            rules_total = f"sum({rules_ready}) == 4"
            deadline = time.monotonic() + 60
            results: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                results = query(base, join)
                if len(results) == 5 and query(base, rules_total):
                    break
                time.sleep(0.5)
            by_school = {r["metric"]["school_id"]: r for r in results}
            log = (workdir / "log").read_text()
            assert set(by_school) == {"HN-1", "HN-2", "CB-1", "HG-1", "ZZ-9"}, log
            hn1 = by_school["HN-1"]
            assert float(hn1["value"][1]) == 12.5
            assert hn1["metric"]["name"] == "Trường Tiểu học Ba Đình"
            assert hn1["metric"]["province"] == "Thành phố Hà Nội"
            assert hn1["metric"]["shard"] == "Thành phố Hà Nội"  # one target per shard
            assert hn1["metric"]["instance"] == host_port  # ... all of one collector
            assert by_school["CB-1"]["metric"]["commune"] == "Xã Bảo Lâm"
            # with the token, every target is up: the collector's own and one per province
            up = {(r["metric"]["job"], r["metric"].get("shard", "")): r["value"][1]
                  for r in query(base, "up")}  # fmt: skip
            assert up == {
                ("edugap-collector", ""): "1",
                ("edugap-province", "Thành phố Hà Nội"): "1",
                ("edugap-province", "Cao Bằng"): "1",
            }
            stored = query(base, 'edugap_collector_messages_total{result="stored"}')
            assert float(stored[0]["value"][1]) == 42
            for outside in ("ZZ-9", "HG-1"):
                info = query(base, f'edugap_school_info{{school_id="{outside}"}}')
                assert info[0]["metric"]["job"] == "edugap-collector"
            classes = {
                r["metric"]["connectivity"]: float(r["value"][1]) for r in query(base, rules_ready)
            }
            assert classes == {"good": 1, "moderate": 2, "bad": 1, "unknown": 0}
            # no shard is empty, none is down, and the collector is up: no target alert
            alerts = {a["labels"]["alertname"] for a in _query_alerts(base)}
            assert not alerts & {"EdugapCollectorDown", "EdugapShardDown", "EdugapShardEmpty"}


def _query_alerts(base: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/alerts", timeout=10)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return alerts


# --- dashboards and rules only use what the collector exposes --------------------------------

ROOT = Path(__file__).parents[2]
METRIC = re.compile(r"\b(edugap_[a-z0-9_]+)")
RECORDED = re.compile(r"\b(edugap:[a-z0-9_:]+|[a-z]+:edugap_[a-z0-9_]+:[a-z0-9_]+)")


def _exposed_names() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    holder = SnapshotHolder()
    holder.publish(national(200, provinces=3), 0.1)
    stats = IngestStats()
    stats.last_batch_at = national(1).generated_at
    body = b"".join(Exposition(holder, stats).text()).decode()
    return {s.name for f in text_string_to_metric_families(body) for s in f.samples}


def _expressions() -> dict[str, str]:
    """Where -> PromQL text, for every dashboard target and every rule."""
    import json

    import yaml  # type: ignore[import-untyped]

    found: dict[str, str] = {}
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for p in doc["panels"]:
            for t in p.get("targets", []):
                found[f"{path.name}: {p['title']} ({t['refId']})"] = t["expr"]
        for v in doc["templating"]["list"]:
            if "definition" in v:
                found[f"{path.name}: variable {v['name']}"] = v["definition"]
    rules = yaml.safe_load((DEPLOY / "rules" / "edugap-rules.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"rules: {rule.get('record') or rule.get('alert')}"] = rule["expr"]
    return found


def test_dashboards_and_alerts_use_only_exposed_metrics() -> None:
    exposed = _exposed_names()
    rules_text = (DEPLOY / "rules" / "edugap-rules.yml").read_text(encoding="utf-8")
    recorded = set(re.findall(r"record: (\S+)", rules_text))
    expressions = _expressions()
    assert len(expressions) > 20
    for where, expr in expressions.items():
        for name in METRIC.findall(expr):
            assert name in exposed, f"{where} uses {name}, which the collector does not expose"
        for name in RECORDED.findall(expr):
            assert name in recorded, f"{where} uses {name}, which no recording rule defines"


def test_committed_dashboards_match_the_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dash_generate", ROOT / "dashboards" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.render().items():
        committed = (ROOT / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == text, f"dashboards/{name} is stale: run python dashboards/generate.py"
