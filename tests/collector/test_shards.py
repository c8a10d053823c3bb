"""Province shards of /metrics: names match as the API matches them, an unknown name is a 404
naming the provinces, schools outside the 34 are in the collector's shard, and /metrics/targets
lists the shards for Prometheus's http_sd."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from edugap.collector.model import IngestStats, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving import shards
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.store import open_store
from tests.collector.sample import school, snapshot


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "shards.db"))
    yield s
    s.close()


def client(store: Store, metrics_token: str | None = None) -> TestClient:
    holder = SnapshotHolder()
    holder.publish(snapshot([
        school("CB-1", "Cao Bằng"),
        school("CB-2", "Cao Bằng", connectivity="good", shortfalls=()),
        school("HN-1", "Thành phố Hà Nội"),
        school("HG-1", "Hà Giang"),  # a province before the 2025 merger: not one of the 34
        school("ZZ-1", registered=False),
    ]), 0.1)  # fmt: skip
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True},
                    metrics_token=metrics_token)  # fmt: skip
    return TestClient(build_app(deps))


def school_ids(body: str) -> set[str]:
    return {
        s.labels["school_id"]
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if "school_id" in s.labels
    }


@pytest.mark.parametrize(
    "name",
    [
        "Cao Bằng",
        "cao bang",
        "CAO BẰNG",
        "Tỉnh Cao Bằng",
        unicodedata.normalize("NFD", "Cao Bằng"),
        unicodedata.normalize("NFD", "Tỉnh Cao Bằng"),
        "  cao   bằng ",
    ],
)
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a_province_shard_matches_its_name_however_it_is_written(
    store: Store, name: str, encoding: str
) -> None:
    response = client(store).get(
        "/metrics", params={"province": name}, headers={"Accept-Encoding": encoding}
    )
    assert response.status_code == 200
    assert school_ids(response.text) == {"CB-1", "CB-2"}


def test_an_unknown_province_is_a_404_that_names_the_provinces(store: Store) -> None:
    response = client(store).get("/metrics", params={"province": "Cao Bang Province"})
    assert response.status_code == 404
    message = response.json()["error"]
    assert "'Cao Bang Province'" in message
    assert "Cao Bằng" in message and "Thành phố Hồ Chí Minh" in message and "Cà Mau" in message
    assert "?collector=1" in message


def test_a_known_province_without_schools_is_an_empty_shard(store: Store) -> None:
    response = client(store).get("/metrics", params={"province": "Cà Mau"})
    assert response.status_code == 200
    assert school_ids(response.text) == set()
    assert "# TYPE edugap_school_download_mbps gauge" in response.text


def test_schools_outside_the_34_provinces_are_in_the_collector_shard(store: Store) -> None:
    c = client(store)
    outside = c.get("/metrics", params={"collector": "1"}).text
    assert school_ids(outside) == {"HG-1", "ZZ-1"}
    assert 'edugap_province_schools{connectivity="moderate",province="Hà Giang"} 1.0' in outside
    assert "edugap_collector_messages_total" in outside
    # every school is in exactly one scraped shard
    everything = school_ids(c.get("/metrics").text)
    found: list[str] = sorted(school_ids(outside))
    for target in c.get("/metrics/targets").json():
        shard = c.get("/metrics", params={"province": target["labels"]["__param_province"]})
        found += school_ids(shard.text)
    assert sorted(found) == sorted(everything)


def test_targets_for_http_sd_name_each_province_with_schools(store: Store) -> None:
    response = client(store).get("/metrics/targets", headers={"Host": "collector.example:8080"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [
        {"targets": ["collector.example:8080"],
         "labels": {"__param_province": name, "shard": name}}
        for name in ("Thành phố Hà Nội", "Cao Bằng")  # the official order
    ]  # fmt: skip


def test_targets_need_the_metrics_token_and_a_snapshot(store: Store) -> None:
    c = client(store, metrics_token="m-token")
    assert c.get("/metrics/targets").status_code == 401
    ok = c.get("/metrics/targets", headers={"Authorization": "Bearer m-token"})
    assert ok.status_code == 200 and len(ok.json()) == 2
    holder = SnapshotHolder()
    empty = TestClient(build_app(HttpDeps(holder, Exposition(holder, IngestStats()), store,
                                          lambda: {"ok": True})))  # fmt: skip
    assert empty.get("/metrics/targets").status_code == 503


def test_shard_of_every_official_name_is_itself() -> None:
    assert len(shards.known()) == 34
    for name in shards.known():
        assert shards.shard_of(name) == name
        assert shards.resolve(unicodedata.normalize("NFD", name.lower())) == name
    assert shards.shard_of("") == shards.OUTSIDE
    assert shards.shard_of("Hà Giang") == shards.OUTSIDE
