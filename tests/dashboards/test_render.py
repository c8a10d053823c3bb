"""The dashboards render right: every panel's queries run on a real Prometheus scraping a
collector with 2,000 schools, then its transformations, field config and colours run in Node
with Grafana's own @grafana/data (the version deploy/compose.yml names, installed from npm on
first use), and the test checks what a user would see."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edugap.collector.model import Snapshot, Store
from edugap.collector.store import open_store
from tests import realparts
from tests.collector.prom_helpers import DEPLOY, collector_url, prometheus, prometheus_config, query
from tests.collector.sample import fleet_snapshot

ROOT = Path(__file__).parents[2]
HARNESS = Path(__file__).with_name("render.js")
CLASS_COLOUR = {"good": "green", "moderate": "orange", "bad": "red", "unknown": "gray"}
SCHOOLS = 2000


def grafana_version() -> str:
    compose = (ROOT / "deploy" / "compose.yml").read_text(encoding="utf-8")
    found = re.search(r"image: grafana/grafana:(\d+\.\d+\.\d+)", compose)
    assert found, "deploy/compose.yml names no grafana/grafana image version"
    return found.group(1)


@pytest.fixture(scope="session")
def grafana_data() -> Path:
    """node_modules with @grafana/data at Grafana's version (npm install on first use, ~15 s;
    kept in ~/.cache/edugap-tests, or $EDUGAP_TEST_CACHE, for later runs)."""
    realparts.require_tool("node", "nodejs")
    npm = realparts.require_tool("npm", "npm")
    version = grafana_version()
    cache = Path(os.environ.get("EDUGAP_TEST_CACHE") or Path.home() / ".cache" / "edugap-tests")
    prefix = cache / f"grafana-data-{version}"
    installed = prefix / "node_modules" / "@grafana" / "data" / "package.json"
    if not installed.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text('{"private": true}\n')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
             f"@grafana/data@{version}"],
            cwd=prefix, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            realparts.missing("@grafana/data", f"npm install failed: {done.stderr[-1500:]}")
    assert json.loads(installed.read_text())["version"] == version
    return prefix / "node_modules"


MAP_PROVINCE = "Thành phố Hồ Chí Minh"  # the geomap's province (a variable of its own)
MAP_TITLE = "Schools by connectivity class in $map_province"


def interpolate(expr: str, province: str) -> str:
    return expr.replace("$map_province", MAP_PROVINCE).replace("$province", province)


def run_queries(base: str, board: dict[str, Any], province: str) -> dict[str, Any]:
    """Every panel's targets on Prometheus, as Grafana would send them."""
    now = time.time()
    results: dict[str, Any] = {}
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            expr = interpolate(t["expr"], province)
            if t.get("instant"):
                r = httpx.get(f"{base}/api/v1/query", params={"query": expr, "time": now})
            else:
                params = {"query": expr, "start": now - 120, "end": now, "step": 15}
                r = httpx.get(f"{base}/api/v1/query_range", params=params)
            assert r.status_code == 200, (panel["title"], expr, r.text)
            results.setdefault(str(panel["id"]), {})[t["refId"]] = r.json()["data"]
    return results


def render(node_modules: Path, board_file: Path, results: dict[str, Any], tmp: Path) -> Any:
    (tmp / "results.json").write_text(json.dumps(results))
    done = subprocess.run(
        [realparts.require_tool("node", "nodejs"), str(HARNESS), str(board_file),
         str(tmp / "results.json")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


class Rendered:
    """The rendered panels of the coverage dashboard, for All provinces and for one."""

    def __init__(self, snap: Snapshot, everything: Any, one: Any, province: str) -> None:
        self.snap, self.all, self.one, self.province = snap, everything, one, province

    @staticmethod
    def panel(rendered: Any, title: str) -> dict[str, Any]:
        found: dict[str, Any] = next(p for p in rendered["panels"].values() if p["title"] == title)
        return found

    @staticmethod
    def fields(frame: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {f["displayName"]: f for f in frame["fields"]}


@pytest.fixture(scope="module")
def rendered(grafana_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    tmp = tmp_path_factory.mktemp("dashboards")
    snap = fleet_snapshot(SCHOOLS)
    store: Store = open_store(str(tmp / "render.db"))
    provinces = {s.province for s in snap.schools.values()}
    per_province = Counter(s.province for s in snap.schools.values())
    top50 = sum(min(50, n) for n in per_province.values())
    try:
        with collector_url(store, snap) as url:
            config = prometheus_config((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"),
                                       url.removeprefix("http://"), tmp / "no-token")  # fmt: skip
            config = re.sub(
                r"^\s*authorization:\n(\s+(type|credentials_file):.*\n)+", "", config, flags=re.M
            )  # the collector has no token here
            with prometheus(tmp / "prometheus", config) as base:
                deadline = time.monotonic() + 90
                ready = [
                    (f"count(edugap_school_info) == {SCHOOLS}", 1),
                    (f"count(edugap:province_monitored:ratio) == {len(provinces)}", 1),
                    (f"count(edugap:province_connected_good:ratio) == {len(provinces)}", 1),
                    (f"count(province:edugap_school_download_mbps:median) == {len(provinces)}", 1),
                    (f"count(province:edugap_school_priority:top50) == {top50}", 1),
                ]
                while time.monotonic() < deadline:
                    if all(len(query(base, q)) == n for q, n in ready):
                        break
                    time.sleep(0.5)
                else:
                    pytest.fail((tmp / "prometheus" / "log").read_text()[-3000:])
                time.sleep(2)  # a few more scrapes for the range queries
                board_file = ROOT / "dashboards" / "edugap-coverage.json"
                board = json.loads(board_file.read_text(encoding="utf-8"))
                province = MAP_PROVINCE
                everything = render(grafana_data, board_file, run_queries(base, board, ".*"), tmp)
                one = render(grafana_data, board_file, run_queries(base, board, province), tmp)
                yield Rendered(snap, everything, one, province)
    finally:
        store.close()


def test_geomap_colours_every_school_of_its_province_by_class(rendered: Rendered) -> None:
    panel = Rendered.panel(rendered.all, MAP_TITLE)
    assert len(panel["frames"]) == 1
    frame = panel["frames"][0]
    fields = Rendered.fields(frame)
    schools = [s for s in rendered.snap.schools.values() if s.province == MAP_PROVINCE]
    assert frame["length"] == len(schools)  # one marker per school of the map's province
    assert fields["lat"]["type"] == fields["lon"]["type"] == "number"  # markers need numbers
    klass = fields["class"]
    colours = rendered.all["colors"]
    assert Counter(klass["values"]) == Counter(s.connectivity for s in schools)
    assert set(klass["values"]) == set(CLASS_COLOUR)  # every class is on the map ...
    for value, colour in zip(klass["values"], klass["colors"], strict=True):
        assert colour == colours[CLASS_COLOUR[value]], value  # ... each in its own colour
    assert set(klass["texts"]) == {"Good", "Moderate", "Bad", "Unknown"}
    by_id = {s.school_id: s for s in rendered.snap.schools.values()}
    for sid, lat in zip(fields["school_id"]["values"][:50], fields["lat"]["values"][:50],
                        strict=True):  # fmt: skip
        assert lat == pytest.approx(by_id[sid].lat)


def test_bar_chart_has_its_x_field_and_a_coloured_bar_per_class(rendered: Rendered) -> None:
    panel = Rendered.panel(rendered.all, "Schools per province by connectivity class")
    board = json.loads((ROOT / "dashboards" / "edugap-coverage.json").read_text("utf-8"))
    x_field = next(p for p in board["panels"] if p["title"] == panel["title"])["options"]["xField"]
    frame = panel["frames"][0]
    fields = Rendered.fields(frame)
    assert x_field in fields, f"Configured x field {x_field!r} not found in {list(fields)}"
    expected = Counter((s.province, s.connectivity) for s in rendered.snap.schools.values())
    provinces = fields[x_field]["values"]
    assert sorted(provinces) == sorted({p for p, _ in expected})
    for klass, colour in CLASS_COLOUR.items():
        bar = fields[klass]
        assert set(bar["colors"]) == {rendered.all["colors"][colour]}
        counts = dict(zip(provinces, bar["values"], strict=True))
        assert all(counts[p] == expected[(p, klass)] for p in provinces), klass


def test_priority_table_is_one_row_per_school_with_its_figures(rendered: Rendered) -> None:
    """The national top 50, from the rules that keep each province's top 50."""
    panel = Rendered.panel(rendered.all, "Schools to act on first (highest priority)")
    assert len(panel["frames"]) == 1
    frame = panel["frames"][0]
    fields = Rendered.fields(frame)
    assert frame["length"] == 50
    assert list(fields)[:3] == ["Priority", "school_id", "School"], list(fields)
    by_id = {s.school_id: s for s in rendered.snap.schools.values()}
    ids = fields["school_id"]["values"]
    assert len(set(ids)) == 50
    priorities = fields["Priority"]["values"]
    assert priorities == sorted(priorities, reverse=True)
    assert min(priorities) >= sorted((s.priority for s in by_id.values()), reverse=True)[49]
    for i, sid in enumerate(ids):
        s = by_id[sid]
        assert fields["School"]["values"][i] == s.name
        assert fields["Province"]["values"][i] == s.province
        assert fields["Download (Mbps)"]["values"][i] == s.download_mbps
        assert fields["Required (Mbps)"]["values"][i] == pytest.approx(s.required_mbps)
        assert fields["Students"]["values"][i] == s.students


def test_provinces_table_is_one_row_per_province(rendered: Rendered) -> None:
    for result, provinces in ((rendered.all, {s.province for s in rendered.snap.schools.values()}),
                              (rendered.one, {rendered.province})):  # fmt: skip
        frame = Rendered.panel(result, "Provinces")["frames"][0]
        fields = Rendered.fields(frame)
        assert frame["length"] == len(provinces)
        assert sorted(fields["Province"]["values"]) == sorted(provinces)
        assert "__name__" not in fields and "Time" not in fields
        for name in ("Bandwidth missing (Mbps)", "Computers missing", "Connected well",
                     "Monitored (live)", "Median download (Mbps)"):  # fmt: skip
            assert None not in fields[name]["values"], name
    frame = Rendered.panel(rendered.one, "Provinces")["frames"][0]
    members = [s for s in rendered.snap.schools.values() if s.province == rendered.province]
    good = sum(s.connectivity == "good" for s in members) / len(members)
    assert Rendered.fields(frame)["Connected well"]["values"] == [pytest.approx(good)]
    downloads = sorted(s.download_mbps for s in members if s.download_mbps is not None)
    median = Rendered.fields(frame)["Median download (Mbps)"]["values"][0]
    assert downloads[(len(downloads) - 1) // 2] <= median <= downloads[len(downloads) // 2]


def test_one_province_shows_only_its_schools(rendered: Rendered) -> None:
    members = [s for s in rendered.snap.schools.values() if s.province == rendered.province]
    frame = Rendered.panel(rendered.one, "Schools to act on first (highest priority)")["frames"][0]
    assert frame["length"] == min(50, len(members))
    assert set(Rendered.fields(frame)["Province"]["values"]) == {rendered.province}
    stat = Rendered.panel(rendered.one, "Schools")["frames"][0]
    assert Rendered.fields(stat)["Value"]["values"] == [len(members)]


def test_stats_and_time_series_name_what_they_show(rendered: Rendered) -> None:
    stat = Rendered.panel(rendered.all, "Computers missing")["frames"][0]
    assert Rendered.fields(stat)["Value"]["values"] == [
        sum(s.computers_gap for s in rendered.snap.schools.values())
    ]
    monitoring = Rendered.panel(rendered.all, "Schools by monitoring status")["frames"]
    assert {f["fields"][1]["displayName"] for f in monitoring} == {
        "live",
        "at_risk",
        "drop_off",
        "never",
    }
    kinds = Rendered.panel(rendered.all, "Schools with each shortfall")["frames"]
    assert len(kinds) == 6 and all(f["length"] > 0 for f in kinds)
