"""Metrics: what a scrape shows for a snapshot, its shards, its errors, and its equivalence with
prometheus_client's own rendering of the same collectors."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edugap.collector.model import IngestStats
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from tests.collector.sample import NOW, national, school, snapshot

GOLDEN = Path(__file__).parent / "golden" / "metrics_hanoi.txt"


def exposition(
    snap: object | None = None, stats: IngestStats | None = None, detail: bool = False
) -> Exposition:
    holder = SnapshotHolder()
    if snap is not None:
        holder.publish(snap, 0.25)  # type: ignore[arg-type]
    return Exposition(holder, stats or IngestStats(), clock=lambda: NOW + timedelta(seconds=30),
                      school_detail=detail)  # fmt: skip


def text(e: Exposition, **kwargs: object) -> str:
    return b"".join(e.text(**kwargs)).decode()  # type: ignore[arg-type]


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(body: str, metric: str, **labels: str) -> float | None:
    return samples(body).get((metric, tuple(sorted(labels.items()))))


def tricky_snapshot() -> object:
    return snapshot([
        school("HN-1", "Hà Nội", name='Trường "Ba Đình"\\ số 1\nmới', download=12.5),
        school("HN-2", "Hà Nội", download=None, connectivity="unknown", monitoring="never",
               shortfalls=("not_monitored",), last_report=None),
        school("DN-1", "Đà Nẵng", download=45.0, connectivity="good", shortfalls=()),
        school("ZZ-1", registered=False, shortfalls=("not_monitored",)),
    ])  # fmt: skip


@pytest.mark.parametrize("detail", [False, True], ids=["default", "detail"])
def test_fast_text_is_identical_to_generate_latest(detail: bool) -> None:
    e = exposition(tricky_snapshot(), detail=detail)
    e.prepare()
    # render_duration is set by the render itself; snapshot age comes from the fixed clock
    assert text(e).encode() == generate_latest(e.registry)


def test_school_values_and_units() -> None:
    body = text(exposition(tricky_snapshot(), detail=True))
    hn1 = {"school_id": "HN-1", "province": "Hà Nội"}
    assert value(body, "edugap_school_download_mbps", **hn1) == 12.5
    assert value(body, "edugap_school_latency_seconds", **hn1) == 0.035
    assert value(body, "edugap_school_uptime_ratio", **hn1) == 0.995
    assert value(body, "edugap_school_bandwidth_gap_mbps", **hn1) == 7.5
    assert value(body, "edugap_school_computers_gap", **hn1) == 15
    assert (
        value(body, "edugap_school_last_report_timestamp_seconds", **hn1)
        == (NOW - timedelta(hours=1)).timestamp()
    )
    assert value(body, "edugap_school_connectivity", **hn1, **{"class": "moderate"}) == 1
    assert value(body, "edugap_school_shortfall", **hn1, kind="bandwidth") == 1
    assert value(body, "edugap_school_shortfall", **hn1, kind="computers") == 0
    assert info_of(body, "HN-1") == {
        "commune": "Phường Ba Đình", "level": "primary", "name": 'Trường "Ba Đình"\\ số 1\nmới',
        "lat": "21.03", "lon": "105.83", "students": "400", "required_mbps": "20.0",
        "computers_required": "25", "contracted_mbps": "", **hn1,
    }  # fmt: skip


def info_of(body: str, school_id: str) -> dict[str, str]:
    found = [dict(k[1]) for k in samples(body)
             if k[0] == "edugap_school_info" and dict(k[1])["school_id"] == school_id]  # fmt: skip
    assert len(found) == 1
    return found[0]


def test_default_serves_few_series_and_the_constants_as_info_labels() -> None:
    """Without metrics.school_detail: no detail gauges, shortfalls only where they are (1), and
    the registry's figures on the info series, so a dashboard still has them."""
    body = text(exposition(tricky_snapshot()))
    hn1 = {"school_id": "HN-1", "province": "Hà Nội"}
    assert value(body, "edugap_school_download_mbps", **hn1) == 12.5
    assert value(body, "edugap_school_priority", **hn1) is not None
    assert value(body, "edugap_school_latency_seconds", **hn1) is None
    assert value(body, "edugap_school_required_mbps", **hn1) is None
    assert "# TYPE edugap_school_required_mbps" not in body
    assert value(body, "edugap_school_shortfall", **hn1, kind="bandwidth") == 1
    assert value(body, "edugap_school_shortfall", **hn1, kind="computers") is None
    info = info_of(body, "HN-1")
    assert (info["required_mbps"], info["students"], info["computers_required"]) == (
        "20.0",
        "400",
        "25",
    )
    dn1 = [k for k in samples(body) if k[0] == "edugap_school_shortfall"
           and dict(k[1])["school_id"] == "DN-1"]  # fmt: skip
    assert dn1 == []  # no shortfall, no series


def test_not_measured_means_no_sample_and_no_error() -> None:
    e = exposition(tricky_snapshot())
    body = text(e)
    hn2 = {"school_id": "HN-2", "province": "Hà Nội"}
    assert value(body, "edugap_school_download_mbps", **hn2) is None
    assert value(body, "edugap_school_last_report_timestamp_seconds", **hn2) is None
    assert value(body, "edugap_school_monitoring", **hn2, status="never") == 1
    assert value(body, "edugap_collector_metric_errors_total") == 0


def test_unusable_value_drops_the_sample_and_counts_an_error() -> None:
    bad = school("HN-3", "Hà Nội", download=float("nan"))
    e = exposition(snapshot([bad, school("HN-4", "Hà Nội", download=8.0)]))
    body = text(e)
    assert value(body, "edugap_school_download_mbps", school_id="HN-3", province="Hà Nội") is None
    assert value(body, "edugap_school_download_mbps", school_id="HN-4", province="Hà Nội") == 8.0
    # upload (nan / 2) and the gap are unusable too
    errors = value(body, "edugap_collector_metric_errors_total")
    assert errors is not None and errors >= 1
    list(e.registry.collect())  # collect() on the same snapshot does not raise either


def test_province_totals() -> None:
    body = text(exposition(tricky_snapshot()))
    assert value(body, "edugap_province_schools", province="Hà Nội", connectivity="moderate") == 1
    assert value(body, "edugap_province_schools", province="Hà Nội", connectivity="unknown") == 1
    assert value(body, "edugap_province_schools", province="Hà Nội", connectivity="good") == 0
    assert value(body, "edugap_province_bandwidth_gap_mbps", province="Hà Nội") == 27.5
    assert value(body, "edugap_province_shortfall_schools", province="Hà Nội",
                 kind="not_monitored") == 1  # fmt: skip


def test_shards_split_the_schools_without_loss_or_overlap() -> None:
    snap = national(600, provinces=5)
    e = exposition(snap)
    full = samples(text(e))
    union: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for province in e.provinces():
        shard = samples(text(e, province=province))
        assert {dict(k[1]).get("province") for k in shard} == {province}
        assert not set(shard) & set(union)
        union.update(shard)
    collector_shard = samples(text(e, collector=True))
    assert not set(collector_shard) & set(union)
    union.update(collector_shard)
    # the render duration is the only sample that is not the same thing twice
    assert union.keys() == full.keys()
    unregistered = {dict(k[1])["school_id"] for k in collector_shard if "school_id" in dict(k[1])}
    assert unregistered == {s.school_id for s in snap.schools.values() if not s.registered}


def test_unknown_province_shard_is_empty_but_valid() -> None:
    body = text(exposition(tricky_snapshot()), province="Nowhere")
    assert samples(body) == {}
    assert "# TYPE edugap_school_download_mbps gauge" in body


def test_before_the_first_snapshot_only_health_has_samples() -> None:
    stats = IngestStats()
    stats.count("stored", 5)
    stats.count("rejected_bad_json", 2)
    body = text(exposition(None, stats))
    assert value(body, "edugap_collector_messages_total", result="stored") == 5
    assert value(body, "edugap_collector_messages_total", result="rejected_bad_json") == 2
    assert value(body, "edugap_collector_messages_total", result="duplicate") == 0
    assert value(body, "edugap_collector_snapshot_age_seconds") is None
    assert not any(k[0].startswith("edugap_school_") for k in samples(body))


def test_health_reads_ingest_stats_and_snapshot_age() -> None:
    stats = IngestStats()
    stats.store_errors, stats.last_lag_seconds, stats.connected = 3, 2.5, True
    stats.clamped["behind"] = 4
    body = text(exposition(tricky_snapshot(), stats))
    assert value(body, "edugap_collector_store_errors_total") == 3
    assert value(body, "edugap_collector_clamped_total", direction="behind") == 4
    assert value(body, "edugap_collector_clamped_total", direction="ahead") == 0
    assert value(body, "edugap_collector_ingest_lag_seconds") == 2.5
    assert value(body, "edugap_collector_ingest_connected") == 1
    assert value(body, "edugap_collector_snapshot_age_seconds") == 30
    assert value(body, "edugap_collector_snapshot_duration_seconds") == 0.25
    assert value(body, "edugap_collector_snapshot_schools") == 4
    assert value(body, "edugap_collector_unregistered_schools") == 1


def test_text_is_rendered_once_per_snapshot() -> None:
    holder = SnapshotHolder()
    e = Exposition(holder, IngestStats())
    holder.publish(tricky_snapshot(), 0.1)  # type: ignore[arg-type]
    first = e.prepare()
    assert e.prepare() is first
    holder.publish(snapshot([school("N-1", "Hà Nội")]), 0.1)
    assert e.prepare() is not first
    assert "N-1" in text(e, province="Hà Nội")


def test_golden_province_shard() -> None:
    """The exact text of one shard; UPDATE_GOLDEN=1 rewrites the file after a deliberate change."""
    body = text(exposition(tricky_snapshot()), province="Hà Nội")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(body, encoding="utf-8")
    assert body == GOLDEN.read_text(encoding="utf-8")
