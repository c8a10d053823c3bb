"""The HTTP API: tokens, filters, pagination, exports, rejects, health, the OpenAPI document."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from edugap.collector.model import IngestStats, Reject, Store, StoreError
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving import shards
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.speedtest import speedtest_app
from edugap.collector.store import open_store
from tests.collector.sample import school, snapshot

TOKEN = "s3cret-token"


def schools() -> list:  # type: ignore[type-arg]
    return [
        school("HN-1", "Hà Nội", commune="Phường Ba Đình", level="primary",
               shortfalls=("bandwidth",), connectivity="moderate"),
        school("HN-2", "Hà Nội", commune="Phường Hoàn Kiếm", level="upper_secondary",
               download=50.0, shortfalls=(), connectivity="good"),
        school("HCM-1", "Thành phố Hồ Chí Minh", commune="Phường Sài Gòn", level="primary",
               download=0.4, shortfalls=("bandwidth", "computers"), connectivity="bad"),
        school("X-9", registered=False, shortfalls=("not_monitored",), connectivity="unknown"),
    ]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "api.db"))
    yield s
    s.close()


def make_client(store: Store, *, api_token: str | None = None, ready: bool = True,
                with_snapshot: bool = True) -> TestClient:  # fmt: skip
    holder = SnapshotHolder()
    if with_snapshot:
        holder.publish(snapshot(schools()), 0.01)
    deps = HttpDeps(
        holder=holder,
        exposition=Exposition(holder, IngestStats()),
        rejects=store,
        readiness=lambda: {"store": True, "ingest": ready, "snapshot": with_snapshot},
        api_token=api_token,
        speedtest=speedtest_app(),
    )
    return TestClient(build_app(deps))


def test_api_without_token_configured_is_open(store: Store) -> None:
    client = make_client(store)
    body = client.get("/api/v1/schools").json()
    assert body["total"] == 4
    # highest priority first: HCM-1 has two shortfalls
    assert body["schools"][0]["school_id"] == "HCM-1"
    assert body["schools"][0]["shortfalls"] == ["bandwidth", "computers"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/schools", "/api/v1/schools/HN-1", "/api/v1/provinces", "/api/v1/map",
     "/api/v1/shortages?format=csv", "/api/v1/rejects"],
)  # fmt: skip
def test_api_needs_the_bearer_token_when_configured(store: Store, path: str) -> None:
    client = make_client(store, api_token=TOKEN)
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer sécret".encode()}).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_health_metrics_and_page_stay_open_with_an_api_token(store: Store) -> None:
    client = make_client(store, api_token=TOKEN)
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert "static/coverage.js" in client.get("/").text
    assert client.get("/static/map.js").status_code == 200
    assert client.get("/outlines/country.json").status_code == 200


def test_metrics_token_protects_metrics_only(store: Store) -> None:
    holder = SnapshotHolder()
    holder.publish(snapshot(schools()), 0.01)
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store,
                    lambda: {"x": True}, metrics_token="m-token")  # fmt: skip
    client = TestClient(build_app(deps))
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert ok.status_code == 200
    assert 'edugap_school_info{commune="Phường Ba Đình"' in ok.text
    assert client.get("/api/v1/provinces").status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("province=ha noi", {"HN-1", "HN-2"}),  # accents and case ignored, prefix "Thành phố"
        ("province=Hồ Chí Minh", {"HCM-1"}),
        ("commune=phuong ba dinh", {"HN-1"}),
        ("level=primary", {"HN-1", "HCM-1"}),
        ("kind=computers", {"HCM-1"}),
        ("kind=any", {"HN-1", "HCM-1", "X-9"}),
        ("connectivity=good", {"HN-2"}),
        ("province=ha noi&level=primary", {"HN-1"}),
    ],
)
def test_school_filters(store: Store, query: str, expected: set[str]) -> None:
    body = make_client(store).get(f"/api/v1/schools?{query}").json()
    assert {s["school_id"] for s in body["schools"]} == expected
    assert body["total"] == len(expected)


def test_pagination_walks_every_school_once(store: Store) -> None:
    client = make_client(store)
    seen = []
    for offset in range(0, 4, 3):
        page = client.get(f"/api/v1/schools?limit=3&offset={offset}").json()
        assert page["total"] == 4
        seen += [s["school_id"] for s in page["schools"]]
    assert sorted(seen) == ["HCM-1", "HN-1", "HN-2", "X-9"]


@pytest.mark.parametrize(
    ("query", "named"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"),
     ("kind=nonsense", "nonsense"), ("connectivity=great", "connectivity"),
     ("monitoring=sometimes", "monitoring")],
)  # fmt: skip
def test_bad_query_parameters_are_400_naming_them(store: Store, query: str, named: str) -> None:
    response = make_client(store).get(f"/api/v1/schools?{query}")
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_one_school_and_unknown_school(store: Store) -> None:
    client = make_client(store)
    one = client.get("/api/v1/schools/HCM-1").json()
    assert one["province"] == "Thành phố Hồ Chí Minh"
    assert one["bandwidth_gap_mbps"] == pytest.approx(19.6)
    missing = client.get("/api/v1/schools/NOPE")
    assert missing.status_code == 404
    assert "NOPE" in missing.json()["error"]


def test_provinces_summaries(store: Store) -> None:
    provinces = make_client(store).get("/api/v1/provinces").json()["provinces"]
    hanoi = next(p for p in provinces if p["province"] == "Hà Nội")
    assert hanoi["schools"] == 2
    assert hanoi["by_connectivity"] == {"moderate": 1, "good": 1}


def test_shortages_in_every_format_with_filters(store: Store) -> None:
    client = make_client(store)
    csv_resp = client.get("/api/v1/shortages?format=csv&province=ha noi")
    assert csv_resp.headers["content-type"].startswith("text/csv")
    # the name says what the list holds and when (the snapshot's day)
    named = 'filename="shortages_ha-noi_2026-03-02.csv"'
    assert named in csv_resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_resp.text.lstrip("\ufeff"))))
    assert {r["school_id"] for r in rows} == {"HN-1", "HN-2"}

    geo = client.get("/api/v1/shortages?format=geojson&kind=computers").json()
    assert [f["properties"]["school_id"] for f in geo["features"]] == ["HCM-1"]

    xlsx = client.get("/api/v1/shortages?format=xlsx")
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.worksheets[0].max_row >= 4

    as_json = json.loads(client.get("/api/v1/shortages").content)
    assert as_json  # the default format is JSON
    bad = client.get("/api/v1/shortages?format=pdf")
    assert bad.status_code == 400
    assert "format" in bad.json()["error"]


def test_rejects_come_from_the_store(store: Store) -> None:
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    store.save_rejects([Reject(at, "edugap/v1/A/b/bandwidth", "bad_json", "line 1", "{oops")])
    body = make_client(store).get("/api/v1/rejects?limit=5").json()
    assert body["rejects"][0]["reason"] == "bad_json"
    assert body["rejects"][0]["received_at"] == at.isoformat()


def test_readyz_reflects_the_checks_and_api_waits_for_a_snapshot(store: Store) -> None:
    client = make_client(store, ready=False, with_snapshot=False)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": True, "ingest": False, "snapshot": False}
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/schools").status_code == 503
    assert make_client(store).get("/readyz").status_code == 200


def test_openapi_lists_every_route(store: Store) -> None:
    client = make_client(store)
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route):
            assert route.path in paths, f"{route.path} is not in /openapi.json"
        elif isinstance(route, Mount):
            assert any(p.startswith(route.path + "/") for p in paths), route.path


def test_speedtest_is_mounted(store: Store) -> None:
    client = make_client(store)
    assert client.get("/speedtest/latency.txt").text == "test=test"


def test_province_shard_is_served_gzipped_to_clients_that_ask(store: Store) -> None:
    client = make_client(store)
    shard = {"province": "Hà Nội"}
    plain = client.get("/metrics", params=shard, headers={"Accept-Encoding": "identity"})
    zipped = client.get("/metrics", params=shard, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text  # httpx decompressed it
    assert 'school_id="HN-1"' in zipped.text and "HCM-1" not in zipped.text
    refused = client.get("/metrics", params=shard, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_made_up_provinces_do_not_grow_the_shard_cache(store: Store) -> None:
    holder = SnapshotHolder()
    holder.publish(snapshot(schools()), 0.01)
    exposition = Exposition(holder, IngestStats())
    deps = HttpDeps(holder=holder, exposition=exposition, rejects=store,
                    readiness=lambda: {"store": True})  # fmt: skip
    client = TestClient(build_app(deps))
    gzip_please = {"Accept-Encoding": "gzip"}
    real = client.get("/metrics", params={"province": "Hà Nội"}, headers=gzip_please)
    assert 'school_id="HN-1"' in real.text
    for i in range(500):  # a scraper (or anyone) asking for shards that do not exist
        made_up = client.get("/metrics", params={"province": f"nowhere-{i}"}, headers=gzip_please)
        assert made_up.status_code == 404 and "school_id=" not in made_up.text
    for name in shards.known():  # provinces without schools are one empty shard
        empty = client.get("/metrics", params={"province": name}, headers=gzip_please)
        assert empty.status_code == 200
    rendered = exposition.prepare()
    assert rendered is not None
    # the provinces with schools, and the one empty shard
    assert len(rendered.gzipped) <= len(exposition.provinces()) + 1
    assert client.get("/metrics", params={"province": "Hà Nội"}, headers=gzip_please).text == (
        real.text
    )


def test_a_store_error_reaches_api_clients_without_the_password() -> None:
    class Broken:
        def recent_rejects(self, limit: int = 100) -> list[Reject]:
            raise StoreError(
                "cannot read from postgresql://edugap@db/edugap?password=Hunter2x: "
                'missing "=" after "postgresql://edugap:Hunter2x@db" in connection info string'
            )

    holder = SnapshotHolder()
    deps = HttpDeps(holder=holder, exposition=Exposition(holder, IngestStats()),
                    rejects=Broken(), readiness=lambda: {"store": False})  # fmt: skip
    response = TestClient(build_app(deps)).get("/api/v1/rejects")
    assert response.status_code == 503 and "store unavailable" in response.text
    assert "Hunter2x" not in response.text
