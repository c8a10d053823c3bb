"""Benchmark: what a real Prometheus pays for 60,000 schools, detail series against the default.

One snapshot of 60,000 schools in 34 provinces (tests.collector.sample.national, as
bench/scrape.py builds it, with the shortfall kinds made consistent with the policy: a school
not monitored has no other kind). Then two phases, one after the other in the same run, each
with its own collector (`edugap serve`'s HTTP app in this process) and its own Prometheus (the
Debian `prometheus` binary, a private port and a temporary data directory) running the shipped
deploy/prometheus/prometheus.yml (one target per province from /metrics/targets, plus
?collector=1; 60 s interval, 30 s timeout) and the shipped rules:

  baseline   `metrics.school_detail = true`: every per-school gauge, as every school was served
             before (about 24.5 series per school);
  measured   the default (at most 10 series per school).

Each phase lets Prometheus scrape a few rounds, sampling its RSS (process_resident_memory_bytes)
every few seconds, then reads prometheus_tsdb_head_series, every target's scrape durations
(scrape_duration_seconds) and failed scrapes (up == 0) and the rule groups' evaluation time.
Its Prometheus then stays up (the baseline's keeps scraping during the measured phase, which
only loads the measured side). Last, the coverage dashboard's queries (the panels' own
expressions, $province = All, the map's province the largest) run through /api/v1/query on
both, in turns; on the baseline also the previous dashboard's geomap and priority queries,
which read every school's series.

    .venv/bin/python bench/prometheus_cost.py            # 60,000 schools, 3 rounds of 60 s
    .venv/bin/python bench/prometheus_cost.py --quick    # 6,000 schools, 3 rounds of 15 s
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness
import httpx

from edugap.collector.model import IngestStats, Snapshot
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from tests.collector.prom_helpers import DEPLOY, prometheus
from tests.collector.sample import national

ROOT = harness.ROOT
BOARD = ROOT / "dashboards" / "edugap-coverage.json"
TIMEOUT_S = 30.0  # the shipped scrape_timeout
TARGET_SERIES = 10.0  # per school, by default
TARGET_QUERY_S = 1.0  # each dashboard query, at 60,000 schools
TOP = 'topk(50, edugap_school_priority{province=~".*"})'
# The previous coverage dashboard's queries that read every school's series (the geomap and
# the priority table), for the baseline phase.
PREVIOUS = {
    "previous geomap (every school, class * info)":
        'edugap_school_connectivity{province=~".*"} * on (school_id) '
        "group_left (lat, lon, name, commune) edugap_school_info",
    "previous priority table (A: top 50 * info)":
        f"sum by (school_id, name, province, commune, level) ({TOP} * on (school_id) "
        "group_left (name, commune, level) edugap_school_info)",
    **{f"previous priority table ({ref}: {m.removeprefix('edugap_school_')})":
       f"sum by (school_id) ({m} and on (school_id) {TOP})"
       for ref, m in (("B", "edugap_school_download_mbps"), ("C", "edugap_school_required_mbps"),
                      ("D", "edugap_school_computers_gap"), ("E", "edugap_school_uptime_ratio"))},
}  # fmt: skip


def consistent(snap: Snapshot) -> Snapshot:
    """The sample's random kinds made possible under the policy: not_monitored comes alone."""
    schools = {}
    for sid, s in snap.schools.items():
        kinds = tuple(k for k in s.shortfalls if k != "not_monitored")
        if s.monitoring in ("drop_off", "never"):
            kinds = ("not_monitored",)
        schools[sid] = dataclasses.replace(s, shortfalls=kinds)
    return dataclasses.replace(snap, schools=schools)


def serve(exposition: Exposition) -> tuple[str, Any, threading.Thread]:
    from scrape import serve as serve_app  # bench/scrape.py's in-process uvicorn

    return serve_app(exposition)


def config(host_port: str, interval: float) -> str:
    """The shipped prometheus.yml pointed at the collector (interval shortened for --quick)."""
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    text = text.replace("collector:8080", host_port)
    text = re.sub(r"scrape_interval: \S+", f"scrape_interval: {interval:g}s", text)
    text = re.sub(r"evaluation_interval: \S+", f"evaluation_interval: {interval:g}s", text)
    timeout = min(TIMEOUT_S, interval)
    return re.sub(r"scrape_timeout: \S+", f"scrape_timeout: {timeout:g}s", text)


def prometheus_version() -> str:
    done = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
    words = (done.stdout or done.stderr).split()
    return f"Prometheus {words[2]}" if len(words) > 2 else "Prometheus"


def own_metrics(base: str) -> dict[str, float]:
    """Prometheus's own /metrics, the unlabelled samples and the rule groups' durations."""
    found: dict[str, float] = {}
    text = httpx.get(f"{base}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        found[name] = float(value)
    return found


def query(base: str, promql: str, timeout: float = 120.0) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=timeout)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def timed_query(base: str, promql: str, instant: bool, runs: int) -> tuple[list[float], int]:
    """Seconds of `runs` evaluations as Grafana asks (instant, or a 10-minute range), and the
    number of series the answer has."""
    times, count = [], 0
    for _ in range(runs):
        now = time.time()
        if instant:
            url, params = "query", {"query": promql, "time": now}
        else:
            url, params = "query_range", {"query": promql, "start": now - 600, "end": now,
                                          "step": 60}  # fmt: skip
        started = time.perf_counter()
        r = httpx.get(f"{base}/api/v1/{url}", params=params, timeout=300)
        times.append(time.perf_counter() - started)
        r.raise_for_status()
        count = len(r.json()["data"]["result"])
    return times, count


def dashboard_queries(map_province: str) -> dict[str, tuple[str, bool]]:
    """Panel title (ref) -> (expression, instant) of the coverage dashboard, $province = All."""
    board = json.loads(BOARD.read_text(encoding="utf-8"))
    found = {}
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"].replace("$map_province", map_province).replace("$province", ".*")
            found[f"{panel['title'].replace('$map_province', map_province)} ({t['refId']})"] = (
                expr, bool(t.get("instant")))  # fmt: skip
    return found


@dataclasses.dataclass
class Phase:
    """What one phase measured."""

    name: str
    detail: bool
    exposed: int = 0  # school series the collector serves
    head_series: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    first_round: list[float] = dataclasses.field(default_factory=list)  # per target
    later: list[float] = dataclasses.field(default_factory=list)  # every later scrape
    failed: int = 0
    rounds: int = 0
    rule_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    queries: dict[str, tuple[list[float], int]] = dataclasses.field(default_factory=dict)


def run_phase(phase: Phase, snap: Snapshot, work: Path, args: argparse.Namespace,
              stack: contextlib.ExitStack) -> str:  # fmt: skip
    """Scrape rounds, RSS, series and rule time of one phase; its Prometheus stays up (until
    `stack` closes) for the queries, which both phases' Prometheus answer in turns."""
    holder = SnapshotHolder()
    holder.publish(snap, 0.0)
    exposition = Exposition(holder, IngestStats(), school_detail=phase.detail)
    exposition.prepare()  # as `edugap serve` does on its refresher thread
    body = b"".join(exposition.text()).decode()
    phase.exposed = sum(1 for line in body.splitlines() if line.startswith("edugap_school_"))
    url, server, thread = serve(exposition)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    stack.callback(stop)
    base = stack.enter_context(
        prometheus(work / phase.name, config(url.removeprefix("http://"), args.interval))
    )
    started = time.monotonic()
    end = started + args.rounds * args.interval + 5
    while time.monotonic() < end:
        try:
            rss = own_metrics(base).get("process_resident_memory_bytes", 0.0)
            phase.rss_peak_mb = max(phase.rss_peak_mb, rss / 2**20)
        except httpx.HTTPError:
            pass
        time.sleep(3)
    # every target's scrapes so far, oldest first
    window = f"{int(time.monotonic() - started) + 60}s"
    durations = query(base, f'scrape_duration_seconds{{job=~"edugap-.*"}}[{window}]')
    ups = query(base, f'up{{job=~"edugap-.*"}}[{window}]')
    for series in durations:
        values = [float(v) for _, v in series["values"]]
        phase.first_round.append(values[0])
        phase.later += values[1:]
        phase.rounds = max(phase.rounds, len(values))
    phase.failed = sum(float(v) == 0 for s in ups for _, v in s["values"])
    # the rules have evaluated at least once on complete data before the queries
    deadline = time.monotonic() + 3 * args.interval
    while not query(base, "province:edugap_school_priority:top50"):
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    own = own_metrics(base)
    phase.head_series = own.get("prometheus_tsdb_head_series", 0.0)
    phase.rss_end_mb = own.get("process_resident_memory_bytes", 0.0) / 2**20
    phase.rss_peak_mb = max(phase.rss_peak_mb, phase.rss_end_mb)
    for key, v in own.items():
        found = re.match(r'prometheus_rule_group_last_duration_seconds\{rule_group="[^"]*;'
                         r'([^"]+)"\}', key)  # fmt: skip
        if found:
            phase.rule_seconds[found.group(1)] = v
    return base


def time_queries(phases: list[tuple[Phase, str]], map_province: str, runs: int) -> None:
    """Every dashboard query on both phases' Prometheus (the previous dashboard's on the
    baseline's), in rounds that run each (phase, query) once in a shuffled order, so that a
    change in the shared machine's load hits every query alike."""
    jobs = []
    for phase, base in phases:
        queries = dashboard_queries(map_province)
        if phase.detail:
            queries.update({k: (v, True) for k, v in PREVIOUS.items()})
        jobs += [(phase, base, title, expr, instant)
                 for title, (expr, instant) in queries.items()]  # fmt: skip
        phase.queries = {title: ([], 0) for title in queries}  # the dashboard's order
    order = random.Random(13)
    for _ in range(runs):
        # shuffled each round: a slow query leaves the machine busy for a moment, which must
        # not always fall on the same side's next query
        order.shuffle(jobs)
        for phase, base, title, expr, instant in jobs:
            times, count = timed_query(base, expr, instant, 1)
            before = phase.queries.get(title, ([], 0))[0]
            phase.queries[title] = (before + times, count)


def _s(values: list[float]) -> str:
    return f"{max(values):.2f} s" if values else "-"


def results(before: Phase, after: Phase, n: int, args: argparse.Namespace, load: float,
            map_province: str, map_schools: int) -> str:  # fmt: skip
    med = statistics.median
    per_school = (after.head_series / n, before.head_series / n)
    rss_ratio = after.rss_peak_mb / before.rss_peak_mb if before.rss_peak_mb else 0.0
    slowest_after = max(after.first_round + after.later, default=0.0)
    queries_after = {t: med(v[0]) for t, v in after.queries.items()}
    slow = {t: s for t, s in queries_after.items() if s > TARGET_QUERY_S}
    served = after.exposed / n
    rows = [
        ("school series served by the collector", f"{before.exposed:,} ({before.exposed / n:.1f}"
         f" per school)", f"{after.exposed:,} ({served:.1f} per school)",
         f"{after.exposed / before.exposed:.2f}x"),
        ("Prometheus head series (`prometheus_tsdb_head_series`)", f"{before.head_series:,.0f}",
         f"{after.head_series:,.0f}", f"{after.head_series / before.head_series:.2f}x"),
        ("Prometheus RSS, peak during the rounds", f"{before.rss_peak_mb:,.0f} MB",
         f"{after.rss_peak_mb:,.0f} MB", f"{rss_ratio:.2f}x"),
        ("Prometheus RSS, at the end", f"{before.rss_end_mb:,.0f} MB",
         f"{after.rss_end_mb:,.0f} MB", f"{after.rss_end_mb / before.rss_end_mb:.2f}x"),
        ("first scrape round, slowest shard", _s(before.first_round), _s(after.first_round),
         f"{max(after.first_round) / max(before.first_round):.2f}x"),
        ("first scrape round, median shard", f"{med(before.first_round):.2f} s",
         f"{med(after.first_round):.2f} s",
         f"{med(after.first_round) / med(before.first_round):.2f}x"),
        ("later scrapes, slowest", _s(before.later), _s(after.later),
         f"{max(after.later) / max(before.later):.2f}x" if before.later and after.later else "-"),
        ("failed scrapes (`up == 0`)", str(before.failed), str(after.failed), ""),
        ("rule group `edugap-schools`, last evaluation",
         f"{before.rule_seconds.get('edugap-schools', 0):.2f} s",
         f"{after.rule_seconds.get('edugap-schools', 0):.2f} s", ""),
    ]  # fmt: skip
    qrows = []
    for title, (times, count) in after.queries.items():
        b_times, b_count = before.queries.get(title, ([], 0))
        qrows.append((title, f"{med(b_times):.3f} s ({b_count})" if b_times else "-",
                      f"{med(times):.3f} s ({count})"))  # fmt: skip
    for title, (times, count) in before.queries.items():
        if title not in after.queries:
            qrows.append((title, f"{med(times):.3f} s ({count})", "(not in the dashboard)"))
    before_q = {t: med(v[0]) for t, v in before.queries.items()}
    geomap_now = next(v for t, v in queries_after.items() if t.startswith("Schools by conn"))
    priority_now = sum(v for t, v in queries_after.items() if t.startswith("Schools to act"))
    priority_before = sum(v for t, v in before_q.items() if t.startswith("previous priority"))
    geomap_before = before_q[next(t for t in before_q if t.startswith("previous geomap"))]
    met_series = per_school[0] <= TARGET_SERIES + 1  # + the collector's own and the rules'
    return "\n".join([
        f"## Prometheus at {n:,} schools: detail series against the default",
        "",
        f"- Machine: {harness.machine_line()}",
        f"- Command: `{harness.command_line('prometheus_cost')}`; "
        f"{harness.shared_note(load, harness.load_average())}. Two phases one after the other "
        "in the same run, each with a fresh Prometheus "
        f"({prometheus_version()}) on the shipped config and rules, "
        f"scrape interval {args.interval:g} s (timeout {min(TIMEOUT_S, args.interval):g} s), "
        f"{args.rounds} rounds; queries {args.runs} runs each, medians.",
        f"- Data: {n:,} schools in 34 provinces (tests.collector.sample.national, shortfalls "
        "consistent with the policy); 35 targets (34 provinces + the collector's own).",
        "",
        "| what | baseline: `metrics.school_detail = true` | measured: default "
        "| measured / baseline |",
        "| --- | --- | --- | --- |",
        *[f"| {' | '.join(r)} |" for r in rows],
        "",
        f"Dashboard queries (`edugap-coverage`, $province = All, map: {map_province}, "
        f"{map_schools:,} schools), median seconds (series in the answer):",
        "",
        "| panel (query) | baseline | measured |",
        "| --- | --- | --- |",
        *[f"| {' | '.join(r)} |" for r in qrows],
        "",
        f"- The panels that read every school before: geomap {geomap_before:.3f} s "
        f"(all {n:,} schools) -> **{geomap_now:.3f} s** (one province, {map_schools:,}); "
        f"priority table, its queries together, {priority_before:.3f} s (5 queries) -> "
        f"**{priority_now:.3f} s** (2 queries over the per-province top 50 rules).",
        f"- Series per school in Prometheus: {per_school[1]:.1f} before, **{per_school[0]:.1f}** "
        f"now (head series / schools, with the per-province, collector and rule series). "
        f"Target: at most {TARGET_SERIES:g} per school served, by default: "
        f"{harness.verdict(served <= TARGET_SERIES and met_series)}.",
        f"- RSS: **{rss_ratio:.2f}x** the baseline's peak. Target: at most half: "
        f"{harness.verdict(0 < rss_ratio <= 0.5)}.",
        f"- Scrapes: slowest {slowest_after:.2f} s against a {min(TIMEOUT_S, args.interval):g} s "
        f"timeout, {after.failed} failed. Target: every scrape within the timeout: "
        f"{harness.verdict(after.failed == 0 and slowest_after < min(TIMEOUT_S, args.interval))}.",
        f"- Dashboard: slowest query {max(queries_after.values()):.3f} s. Target: every query of "
        f"the dashboard within {TARGET_QUERY_S:g} s: {harness.verdict(not slow)}"
        + (f" (over: {', '.join(sorted(slow))})" if slow else "") + ".",
        "",
    ])  # fmt: skip


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schools", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="scrape rounds per phase")
    parser.add_argument("--interval", type=float, default=None, help="scrape interval, seconds")
    parser.add_argument("--runs", type=int, default=5, help="runs of each dashboard query")


def main() -> int:
    args = harness.arguments("prometheus_cost", __doc__, "6,000 schools, 15 s rounds",
                             options).parse_args()  # fmt: skip
    n = args.schools or (6_000 if args.quick else 60_000)
    args.interval = args.interval or (15.0 if args.quick else 60.0)
    load = harness.load_average()
    print(f"building a snapshot of {n} schools ...", flush=True)
    snap = consistent(national(n, provinces=34))
    sizes = Counter(s.province for s in snap.schools.values() if s.province)
    map_province, map_schools = sizes.most_common(1)[0]
    with (
        tempfile.TemporaryDirectory(prefix="edugap-prometheus-cost-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        phases: list[tuple[Phase, str]] = []
        for name, detail in (("baseline", True), ("measured", False)):
            print(f"{name}: Prometheus scraping {n} schools, {args.rounds} rounds ...",
                  flush=True)  # fmt: skip
            p = Phase(name, detail)
            phases.append((p, run_phase(p, snap, Path(tmp), args, stack)))
            print(
                f"  {p.head_series:,.0f} series, peak RSS {p.rss_peak_mb:,.0f} MB, "
                f"slowest first scrape {max(p.first_round, default=0):.2f} s",
                flush=True,
            )
        print("dashboard queries on both, in turns ...", flush=True)
        time_queries(phases, map_province, args.runs)
    (before, _), (after, _) = phases
    text = results(before, after, n, args, load, map_province, map_schools)
    harness.write_result(text, args.out)
    return 0


if __name__ == "__main__":
    harness.main(main)
