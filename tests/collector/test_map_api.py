"""/api/v1/map honours the page's filters and is small; JSON and CSV answers are compressed
for clients that accept it."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edugap.collector.model import IngestStats, Snapshot, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.speedtest import serve_in_thread
from edugap.collector.store import open_store
from tests.collector.sample import fleet_snapshot, school, snapshot


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "map.db"))
    yield s
    s.close()


def sample() -> Snapshot:
    return snapshot([
        school("CB-1", "Cao Bằng", commune="Xã Bảo Lâm", connectivity="bad", level="primary",
               shortfalls=("bandwidth", "computers")),
        school("CB-2", "Cao Bằng", commune="Xã Quảng Lâm", connectivity="good", shortfalls=(),
               level="lower_secondary"),
        school("CB-3", "Cao Bằng", commune="Xã Bảo Lâm", connectivity="unknown",
               monitoring="never", shortfalls=("not_monitored",)),
        school("HN-1", "Thành phố Hà Nội", connectivity="moderate", monitoring="at_risk"),
        school("ZZ-1", registered=False, connectivity="unknown", monitoring="live"),
    ])  # fmt: skip


@pytest.fixture
def url(store: Store) -> Iterator[str]:
    holder = SnapshotHolder()
    holder.publish(sample(), 0.1)
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True},
                    time_zone="Asia/Ho_Chi_Minh")  # fmt: skip
    with serve_in_thread(build_app(deps)) as base:
        yield base


def ids(doc: dict[str, Any]) -> set[str]:
    return set(doc["schools"]["school_id"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"CB-1", "CB-2", "CB-3", "HN-1", "ZZ-1"}),
        ("province=cao bang", {"CB-1", "CB-2", "CB-3"}),  # matched like the other routes
        ("province=Tỉnh Cao Bằng&commune=bao lam", {"CB-1", "CB-3"}),
        ("level=Lower_Secondary", {"CB-2"}),
        ("connectivity=unknown", {"CB-3", "ZZ-1"}),
        ("monitoring=at_risk", {"HN-1"}),
        ("kind=computers", {"CB-1"}),
        ("kind=any&province=cao bang", {"CB-1", "CB-3"}),
        ("province=cao bang&connectivity=good&monitoring=live", {"CB-2"}),
    ],
)
def test_map_honours_every_filter(url: str, query: str, expected: set[str]) -> None:
    response = httpx.get(f"{url}/api/v1/map?{query}")
    assert response.status_code == 200
    doc = response.json()
    assert ids(doc) == expected and doc["total"] == len(expected)


def test_map_columns_decode_to_each_school(url: str) -> None:
    doc = httpx.get(f"{url}/api/v1/map").json()
    cols = doc["schools"]
    row = {name: values[cols["school_id"].index("CB-1")] for name, values in cols.items()}
    assert doc["classes"][row["connectivity"]] == "bad"
    assert doc["monitoring_states"][row["monitoring"]] == "live"
    assert doc["places"][row["place"]] == ["Cao Bằng", "Xã Bảo Lâm"]
    assert doc["levels"][row["level"]] == "primary"
    kinds = [k for i, k in enumerate(doc["shortfall_kinds"]) if row["shortfalls"] >> i & 1]
    assert kinds == ["bandwidth", "computers"]
    assert (row["lat"], row["lon"]) == (21.03, 105.83)
    assert row["bandwidth_gap_mbps"] == 7.5 and row["computers_gap"] == 15
    unregistered = cols["school_id"].index("ZZ-1")
    assert cols["lat"][unregistered] is None  # counted, but not drawn
    assert doc["time_zone"] == "Asia/Ho_Chi_Minh"


@pytest.mark.parametrize(
    ("query", "named"),
    [("connectivity=fast", "connectivity"), ("monitoring=sometimes", "monitoring"),
     ("kind=money", "money")],
)  # fmt: skip
def test_map_refuses_a_bad_filter_naming_it(url: str, query: str, named: str) -> None:
    response = httpx.get(f"{url}/api/v1/map?{query}")
    assert response.status_code == 400 and named in response.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/map",
        "/api/v1/map?province=cao bang",
        "/api/v1/schools?limit=1000",
        "/api/v1/shortages?format=csv",
        "/api/v1/shortages?format=json",
        "/api/v1/shortages?format=geojson",
        "/openapi.json",
    ],
)
def test_json_and_csv_are_gzipped_when_the_client_accepts_it(url: str, path: str) -> None:
    # httpx would decompress on its own: read the raw bytes to see what travelled
    with httpx.Client() as client:
        with client.stream("GET", url + path, headers={"Accept-Encoding": "gzip"}) as zipped:
            raw = b"".join(zipped.iter_raw())
        plain = client.get(url + path, headers={"Accept-Encoding": "identity"})
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert "Accept-Encoding" in zipped.headers["vary"]
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content)


def test_small_answers_and_spreadsheets_are_sent_as_they_are(url: str) -> None:
    with httpx.Client() as client:
        for path in ("/api/v1/schools/CB-1", "/api/v1/shortages?format=xlsx"):
            with client.stream("GET", url + path, headers={"Accept-Encoding": "gzip"}) as r:
                assert r.status_code == 200 and "content-encoding" not in r.headers, path


def test_shortages_of_the_page_filter_download_as_valid_csv(url: str) -> None:
    response = httpx.get(
        f"{url}/api/v1/shortages",
        params={"format": "csv", "province": "cao bang", "connectivity": "bad"},
        headers={"Accept-Encoding": "gzip"},
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["school_id"] for r in rows] == ["CB-1"]


def test_national_map_is_under_a_megabyte_compressed(store: Store) -> None:
    snap = fleet_snapshot(60_000)
    holder = SnapshotHolder()
    holder.publish(snap, 0.1)
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True})
    gzip_please = {"Accept-Encoding": "gzip"}
    with (
        serve_in_thread(build_app(deps)) as base,
        httpx.stream("GET", f"{base}/api/v1/map", headers=gzip_please) as response,
    ):
        raw = b"".join(response.iter_raw())
    doc = json.loads(gzip.decompress(raw))
    assert doc["total"] == 60_000 and len(doc["schools"]["lat"]) == 60_000
    assert len(raw) < 1_000_000, f"{len(raw)} bytes"
