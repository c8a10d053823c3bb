"""Prometheus metrics read from the current snapshot at scrape time, never updated per message.

The tables below declare every school and province metric once. By default a school has at
most 10 series (docs/metrics.md derives the bound from the policy): its info series, which also
carries the registry's constants as labels, download, priority, connectivity class, monitoring
status, and a shortfall series for each kind it has. `metrics.school_detail = true` adds every
other per-school gauge and the shortfall kinds a school does not have, as 0. `SnapshotCollector` and
`HealthCollector` are ordinary prometheus_client collectors (`collect()` yields metric
families) over them; edugap/collector/serving/exposition.py renders the same tables as cached text
for /metrics, byte-identical to `generate_latest` over these collectors (the tests check).

A value that is None means "not measured" and has no sample. A value that cannot be turned into
a finite number drops its sample and counts in `edugap_collector_metric_errors_total`;
`collect()` never raises.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go

from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    NEEDS,
    SHORTFALL_KINDS,
    SPEEDTEST_STATES,
    AreaSummary,
    IngestStats,
    SchoolStatus,
    Snapshot,
)
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.shards import shard_of
from edugap.protocol.messages import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
# Prometheus/Go float formatting, as generate_latest writes it (typed alias for mypy)
go_float: Callable[[float], str] = _untyped_go


def _num(value: float | int | bool | None) -> float | None:
    return None if value is None else float(value)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass(frozen=True, slots=True)
class SchoolValue:
    """One per-school gauge: `name{province, school_id} getter(school)`."""

    name: str
    help: str
    get: Callable[[SchoolStatus], float | None]
    detail: bool = True  # served only with metrics.school_detail


SCHOOL_VALUES: tuple[SchoolValue, ...] = (
    SchoolValue("edugap_school_download_mbps",
                "Download speed: the policy statistic (default 7-day median) of successful tests.",
                lambda s: _num(s.download_mbps), detail=False),
    SchoolValue("edugap_school_upload_mbps", "Upload speed: the policy statistic of tests.",
                lambda s: _num(s.upload_mbps)),
    SchoolValue("edugap_school_latency_seconds", "Latency of speed tests (policy statistic).",
                lambda s: None if s.latency_ms is None else s.latency_ms / 1000.0),
    SchoolValue("edugap_school_required_mbps", "Download speed the school needs under the policy.",
                lambda s: _num(s.required_mbps)),
    SchoolValue("edugap_school_bandwidth_gap_mbps",
                "Mbps missing to reach the required download speed (0 when met).",
                lambda s: _num(s.bandwidth_gap_mbps)),
    SchoolValue("edugap_school_speed_tests", "Successful speed tests in the policy window.",
                lambda s: _num(s.tests_7d)),
    SchoolValue("edugap_school_uptime_ratio",
                "Share of availability checks that succeeded during school hours (0 to 1).",
                lambda s: None if s.uptime_pct is None else s.uptime_pct / 100.0),
    SchoolValue("edugap_school_contracted_mbps", "Download speed in the ISP contract (registry).",
                lambda s: _num(s.contracted_mbps)),
    SchoolValue("edugap_school_isp_compliant",
                "1 when the measured speed reaches the compliance share of the contract, else 0.",
                lambda s: _num(s.isp_compliant)),
    SchoolValue("edugap_school_students", "Students enrolled (registry).",
                lambda s: _num(s.students)),
    SchoolValue("edugap_school_devices_reporting", "Devices of the school that reported recently.",
                lambda s: _num(s.devices_reporting)),
    SchoolValue("edugap_school_computers_usable", "Computers that meet the usable-computer rule.",
                lambda s: _num(s.computers_usable)),
    SchoolValue("edugap_school_computers_required", "Computers the school needs under the policy.",
                lambda s: _num(s.computers_required)),
    SchoolValue("edugap_school_computers_gap", "Computers missing (required minus usable, >= 0).",
                lambda s: _num(s.computers_gap)),
    SchoolValue("edugap_school_computers_os_out_of_support",
                "Computers whose operating system is out of vendor support (upgrade needed).",
                lambda s: _num(s.os_out_of_support)),
    SchoolValue("edugap_school_last_report_timestamp_seconds",
                "Unix time of the newest report from the school.", lambda s: _ts(s.last_report)),
    SchoolValue("edugap_school_priority", "Priority for intervention; higher first.",
                lambda s: _num(s.priority), detail=False),
)  # fmt: skip

# name, help, label names (beyond province and school_id)
SCHOOL_STATES = (
    ("edugap_school_connectivity", "1 for the school's connectivity class.", "class"),
    ("edugap_school_monitoring", "1 for the school's monitoring status.", "status"),
)
SCHOOL_SHORTFALL = (
    "edugap_school_shortfall",
    "1 when the school has this shortfall (0 for the others with metrics.school_detail only).",
)
SCHOOL_INFO = (
    "edugap_school_info",
    "Registry facts about a school and the policy's figures from them (join on school_id); "
    "always 1.",
    ("commune", "computers_required", "contracted_mbps", "lat", "level", "lon", "name",
     "province", "required_mbps", "school_id", "students"),
)  # fmt: skip


def school_values(detail: bool) -> tuple[SchoolValue, ...]:
    """The per-school gauges served: every one with metrics.school_detail, else the few."""
    return SCHOOL_VALUES if detail else tuple(m for m in SCHOOL_VALUES if not m.detail)


def shortfall_samples(school: SchoolStatus, detail: bool) -> list[tuple[str, str]]:
    """(kind, value) of a school's shortfall series: the kinds it has, or (detail) every kind."""
    have = set(school.shortfalls)
    if detail:
        return [(kind, "1.0" if kind in have else "0.0") for kind in SHORTFALL_KINDS]
    return [(kind, "1.0") for kind in SHORTFALL_KINDS if kind in have]


def info_labels(s: SchoolStatus) -> list[str]:
    """The info series' label values in SCHOOL_INFO's order, school_id (second last) included."""
    return [s.commune, num_label(s.computers_required), num_label(s.contracted_mbps),
            coord_label(s.lat), s.level, coord_label(s.lon), s.name, s.province,
            num_label(s.required_mbps), s.school_id, num_label(s.students)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProvinceValue:
    """One per-province gauge from the province's AreaSummary."""

    name: str
    help: str
    get: Callable[[AreaSummary], float]


PROVINCE_VALUES: tuple[ProvinceValue, ...] = (
    ProvinceValue("edugap_province_bandwidth_gap_mbps", "Sum of schools' bandwidth gaps.",
                  lambda a: float(a.bandwidth_gap_mbps)),
    ProvinceValue("edugap_province_bandwidth_gap_measured_mbps",
                  "Sum of bandwidth gaps measured by a recent speed test.",
                  lambda a: float(a.bandwidth_gap_measured_mbps)),
    ProvinceValue("edugap_province_bandwidth_gap_assumed_mbps",
                  "Sum of bandwidth gaps assumed by the policy for want of a test.",
                  lambda a: float(a.bandwidth_gap_assumed_mbps)),
    ProvinceValue("edugap_province_computers_gap", "Sum of schools' missing computers.",
                  lambda a: float(a.computers_gap)),
    ProvinceValue("edugap_province_computers_gap_measured",
                  "Sum of missing computers counted from a recent inventory.",
                  lambda a: float(a.computers_gap_measured)),
    ProvinceValue("edugap_province_computers_gap_assumed",
                  "Sum of missing computers assumed by the policy for want of an inventory.",
                  lambda a: float(a.computers_gap_assumed)),
    ProvinceValue("edugap_province_computers_usable", "Usable computers in the province.",
                  lambda a: float(a.computers_usable)),
    ProvinceValue("edugap_province_computers_required", "Computers required in the province.",
                  lambda a: float(a.computers_required)),
    ProvinceValue("edugap_province_computers_os_out_of_support",
                  "Computers running an OS out of vendor support.",
                  lambda a: float(a.os_out_of_support)),
)  # fmt: skip
# name, help, label, which AreaSummary dict, the label's values
PROVINCE_COUNTS = (
    ("edugap_province_schools", "Schools by connectivity class.", "connectivity",
     "by_connectivity", CONNECTIVITY_CLASSES),
    ("edugap_province_monitoring_schools", "Schools by monitoring status.", "status",
     "by_monitoring", MONITORING_STATES),
    ("edugap_province_shortfall_schools", "Schools with each shortfall.", "kind",
     "shortfalls", SHORTFALL_KINDS),
    ("edugap_province_need_schools",
     "Schools by need: measured (a shortfall found from evidence), assumed, none.", "need",
     "by_need", NEEDS),
    ("edugap_province_speedtest_schools",
     "Schools by speed-test state: no_tester = live agents but none designated to test.",
     "state", "by_speedtest", SPEEDTEST_STATES),
)  # fmt: skip


def esc_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def coord_label(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def num_label(value: float | int | None) -> str:
    """A figure as a label value: '' when unknown, integers without a fraction."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value) if isinstance(value, int) else go_float(value)


class ErrorCount:
    """A thread-safe counter of dropped samples."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


def value_of(get: Callable[[T], float | None], obj: T, errors: ErrorCount) -> float | None:
    try:
        value = get(obj)
        if value is None:
            return None
        value = float(value)
    except Exception:
        errors.add()
        return None
    if not math.isfinite(value):
        errors.add()
        return None
    return value


def group_by_shard(snapshot: Snapshot) -> dict[str, list[SchoolStatus]]:
    """Schools per shard (serving/shards.py), shards in name order, each sorted by province,
    then school_id; schools outside the 34 provinces under OUTSIDE ('')."""
    keyed = sorted(
        snapshot.schools.values(), key=lambda s: (shard_of(s.province), s.province, s.school_id)
    )
    groups: dict[str, list[SchoolStatus]] = {}
    for school in keyed:
        groups.setdefault(shard_of(school.province), []).append(school)
    return groups


def areas_in_shard_order(snapshot: Snapshot) -> list[AreaSummary]:
    """The province summaries in the order group_by_shard puts their schools."""
    return sorted(snapshot.provinces, key=lambda a: (shard_of(a.province), a.province))


# --- the collectors ----------------------------------------------------------------------------


class SnapshotCollector(Collector):
    """Per-school and per-province metric families from the current snapshot."""

    def __init__(self, holder: SnapshotHolder, errors: ErrorCount, detail: bool = False) -> None:
        self.holder = holder
        self.errors = errors
        self.detail = detail

    def collect(self) -> Iterable[Metric]:
        try:
            snapshot = self.holder.current
            groups = group_by_shard(snapshot) if snapshot else {}
            yield from self._schools(groups)
            yield from self._provinces(areas_in_shard_order(snapshot) if snapshot else [])
        except Exception:
            self.errors.add()
            log.exception("collecting snapshot metrics failed")

    def _schools(self, groups: dict[str, list[SchoolStatus]]) -> Iterator[Metric]:
        members = [s for group in groups.values() for s in group]
        for metric in school_values(self.detail):
            fam = GaugeMetricFamily(metric.name, metric.help, labels=["school_id", "province"])
            for s in members:
                v = value_of(metric.get, s, self.errors)
                if v is not None:
                    fam.add_metric([s.school_id, s.province], v)
            yield fam
        for (name, help_text, label), attr in zip(
            SCHOOL_STATES, ("connectivity", "monitoring"), strict=True
        ):
            fam = GaugeMetricFamily(name, help_text, labels=["school_id", "province", label])
            for s in members:
                fam.add_metric([s.school_id, s.province, getattr(s, attr)], 1.0)
            yield fam
        fam = GaugeMetricFamily(*SCHOOL_SHORTFALL, labels=["school_id", "province", "kind"])
        for s in members:
            for kind, flag in shortfall_samples(s, self.detail):
                fam.add_metric([s.school_id, s.province, kind], float(flag))
        yield fam
        fam = GaugeMetricFamily(SCHOOL_INFO[0], SCHOOL_INFO[1], labels=list(SCHOOL_INFO[2]))
        for s in members:
            fam.add_metric(info_labels(s), 1.0)
        yield fam

    def _provinces(self, areas: list[AreaSummary]) -> Iterator[Metric]:
        for metric in PROVINCE_VALUES:
            fam = GaugeMetricFamily(metric.name, metric.help, labels=["province"])
            for a in areas:
                v = value_of(metric.get, a, self.errors)
                if v is not None:
                    fam.add_metric([a.province], v)
            yield fam
        for name, help_text, label, attr, values in PROVINCE_COUNTS:
            fam = GaugeMetricFamily(name, help_text, labels=["province", label])
            for a in areas:
                counts: dict[str, int] = getattr(a, attr)
                for state in values:
                    fam.add_metric([a.province, state], float(counts.get(state, 0)))
            yield fam


class HealthCollector(Collector):
    """The collector's own health: ingest counters, lag, snapshot age and duration, errors."""

    def __init__(
        self,
        holder: SnapshotHolder,
        stats: IngestStats,
        errors: ErrorCount,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.holder = holder
        self.stats = stats
        self.errors = errors
        self.clock = clock
        self.render_seconds = 0.0

    def collect(self) -> Iterable[Metric]:
        try:
            yield from self._collect()
        except Exception:
            self.errors.add()
            log.exception("collecting health metrics failed")

    def _collect(self) -> Iterator[Metric]:
        stats = self.stats
        with stats.lock:
            messages = dict(stats.messages)
            store_errors, clamped, batches = stats.store_errors, dict(stats.clamped), stats.batches
            lag, last_batch, connected = (
                stats.last_lag_seconds,
                stats.last_batch_at,
                stats.connected,
            )
            reader, paho = stats.reader, stats.paho_version
        fam = CounterMetricFamily("edugap_collector_messages",
                                  "MQTT messages by outcome: stored, duplicate, rejected_<reason>.",
                                  labels=["result"])  # fmt: skip
        for result in sorted(set(messages) | {"stored", "duplicate"}):
            fam.add_metric([result], float(messages.get(result, 0)))
        yield fam
        yield CounterMetricFamily(
            "edugap_collector_store_errors",
            "Batches the store failed to write.",
            value=store_errors,
        )
        clamp = CounterMetricFamily("edugap_collector_clamped",
                                    "Reports whose implausible measured_at was clamped to the "
                                    "receive time, by direction of the agent's clock.",
                                    labels=["direction"])  # fmt: skip
        for direction in ("ahead", "behind"):
            clamp.add_metric([direction], float(clamped.get(direction, 0)))
        yield clamp
        yield CounterMetricFamily("edugap_collector_batches", "Batches written.", value=batches)
        yield GaugeMetricFamily("edugap_collector_ingest_lag_seconds",
                                "Receive time minus measured_at of the last stored report.",
                                value=lag)  # fmt: skip
        yield GaugeMetricFamily(
            "edugap_collector_ingest_connected",
            "1 while ingest is connected to the broker.",
            value=float(connected),
        )
        readers = GaugeMetricFamily("edugap_collector_ingest_reader_info",
                                    "The MQTT reader ingest runs: fast, or paho (about 3x "
                                    "slower: the installed paho-mqtt lacks what the fast one "
                                    "relies on).", labels=["reader", "paho_version"])  # fmt: skip
        if reader:
            readers.add_metric([reader, paho], 1.0)
        yield readers
        last = GaugeMetricFamily("edugap_collector_last_batch_timestamp_seconds",
                                 "Unix time of the last written batch.")  # fmt: skip
        if last_batch is not None:
            last.add_metric([], last_batch.timestamp())
        yield last
        info = self.holder.info
        snapshot_families = (
            ("edugap_collector_snapshot_timestamp_seconds", "Unix time of the current snapshot."),
            ("edugap_collector_snapshot_age_seconds", "Age of the current snapshot."),
            ("edugap_collector_snapshot_duration_seconds", "Time the last evaluation took."),
            ("edugap_collector_snapshot_schools", "Schools in the current snapshot."),
            ("edugap_collector_unregistered_schools", "Reporting schools not in the registry."),
        )  # fmt: skip
        values: list[float | None] = [None] * len(snapshot_families)
        if info is not None:
            snap = info.snapshot
            unregistered = sum(1 for s in snap.schools.values() if not s.registered)
            age = max(0.0, (self.clock() - snap.generated_at).total_seconds())
            values = [snap.generated_at.timestamp(), age, info.duration_seconds,
                      float(len(snap.schools)), float(unregistered)]  # fmt: skip
        for (name, help_text), v in zip(snapshot_families, values, strict=True):
            gauge = GaugeMetricFamily(name, help_text)
            if v is not None:
                gauge.add_metric([], v)
            yield gauge
        yield CounterMetricFamily(
            "edugap_collector_snapshot_errors",
            "Policy evaluations that failed.",
            value=self.holder.errors,
        )
        yield GaugeMetricFamily("edugap_collector_render_duration_seconds",
                                "Time to render the current snapshot's metrics text.",
                                value=self.render_seconds)  # fmt: skip
        yield CounterMetricFamily("edugap_collector_metric_errors",
                                  "Samples dropped because a value was unusable.",
                                  value=self.errors.value)  # fmt: skip
