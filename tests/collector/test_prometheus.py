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
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.speedtest import serve_in_thread
from edugap.collector.store import open_store
from tests import realparts
from tests.collector.sample import national, school, snapshot

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "prom.db"))
    yield s
    s.close()


def collector_url(store: Store, snap: Any) -> Any:
    holder = SnapshotHolder()
    holder.publish(snap, 0.5)
    stats = IngestStats()
    stats.count("stored", 42)
    stats.count("rejected_bad_json", 3)
    stats.reader, stats.paho_version = "fast", "2.2.0"
    deps = HttpDeps(holder, Exposition(holder, stats), store, lambda: {"all": True})
    return serve_in_thread(build_app(deps))


def test_promtool_finds_nothing_wrong_with_populated_metrics(store: Store) -> None:
    promtool = realparts.require_tool("promtool", "prometheus")
    with collector_url(store, national(500, provinces=6)) as url:
        for query in ("", "?province=Tỉnh 03", "?collector=1"):
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


def test_deploy_config_is_valid_and_shards_every_province() -> None:
    promtool = realparts.require_tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    from edugap.collector.registry.places import default_places

    config = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    for province in default_places().provinces:
        assert f'- "{province.name}"' in config, f"{province.name} has no shard target"


def _prometheus_config(template: str, host_port: str, provinces: list[str]) -> str:
    """The deploy config pointed at the test collector, scraping every second."""
    config = template.replace("collector:8080", host_port)
    config = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", config)
    config = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", config)
    config = re.sub(r"evaluation_interval: \S+", "evaluation_interval: 1s", config)
    # keep only the provinces this collector has, so no target scrapes an empty shard
    head, _, tail = config.partition("      - targets:\n")
    targets = "".join(f'          - "{p}"\n' for p in provinces)
    tail = tail[tail.index("    relabel_configs:") :]
    return head + "      - targets:\n" + targets + tail


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_real_prometheus_scrapes_shards_and_joins_school_info(store: Store, tmp_path: Path) -> None:
    exe = realparts.require_tool("prometheus", "prometheus")
    snap = snapshot([
        school("HN-1", "Thành phố Hà Nội", name="Trường Tiểu học Ba Đình", download=12.5),
        school("HN-2", "Thành phố Hà Nội", download=48.0, connectivity="good", shortfalls=()),
        school("CB-1", "Cao Bằng", commune="Xã Bảo Lâm", download=0.6, connectivity="bad"),
        school("ZZ-9", registered=False),
    ])  # fmt: skip
    with collector_url(store, snap) as url:
        host_port = url.removeprefix("http://")
        workdir = tmp_path / "prometheus"
        (workdir / "rules").mkdir(parents=True)
        (workdir / "rules" / "edugap-rules.yml").write_text(
            (DEPLOY / "rules" / "edugap-rules.yml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        template = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
        (workdir / "prometheus.yml").write_text(
            _prometheus_config(template, host_port, ["Thành phố Hà Nội", "Cao Bằng"]),
            encoding="utf-8",
        )
        port = realparts.free_port()
        proc = subprocess.Popen(
            [exe, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(workdir / "log").open("wb"),
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            realparts.wait_port(port, timeout=30)
            join = (
                "edugap_school_download_mbps * on (school_id) "
                "group_left (name, commune) edugap_school_info"
            )
            rules_ready = "edugap:schools:sum_by_connectivity"
            # rules run on their own schedule: wait until they have seen both shards
            rules_total = f"sum({rules_ready}) == 3"
            deadline = time.monotonic() + 60
            results: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                results = _query(base, join)
                if len(results) == 4 and _query(base, rules_total):
                    break
                time.sleep(0.5)
            by_school = {r["metric"]["school_id"]: r for r in results}
            assert set(by_school) == {"HN-1", "HN-2", "CB-1", "ZZ-9"}, (workdir / "log").read_text()
            hn1 = by_school["HN-1"]
            assert float(hn1["value"][1]) == 12.5
            assert hn1["metric"]["name"] == "Trường Tiểu học Ba Đình"
            assert hn1["metric"]["province"] == "Thành phố Hà Nội"
            assert hn1["metric"]["instance"] == "Thành phố Hà Nội"  # one target per shard
            assert by_school["CB-1"]["metric"]["commune"] == "Xã Bảo Lâm"
            # the collector's own job carries health and the unregistered school
            up = {r["metric"]["job"]: r["value"][1] for r in _query(base, "up")}
            assert up == {"edugap-collector": "1", "edugap-province": "1"}
            stored = _query(base, 'edugap_collector_messages_total{result="stored"}')
            assert float(stored[0]["value"][1]) == 42
            assert _query(base, 'edugap_school_info{school_id="ZZ-9"}')[0]["metric"]["job"] == (
                "edugap-collector"
            )
            classes = {
                r["metric"]["connectivity"]: float(r["value"][1]) for r in _query(base, rules_ready)
            }
            assert classes == {"good": 1, "moderate": 1, "bad": 1, "unknown": 0}
        finally:
            proc.terminate()
            proc.wait(30)


# --- dashboards and rules only use what the collector exposes --------------------------------

ROOT = Path(__file__).parents[2]
METRIC = re.compile(r"\b(edugap_[a-z0-9_]+)")
RECORDED = re.compile(r"\b(edugap:[a-z0-9_:]+)")


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
