"""Scale test: 60,000 schools and 600,000 devices through a real Mosquitto into one collector.

Steps, all on this machine:

1. Mosquitto on a free port; the simulated registry (`edugap.collector.demo.fleet`, seed 1)
imported into a
   SQLite store with `edugap schools import`.
2. Two persistent sessions are created on the broker: the collector's (`edugap serve`, started
   once and stopped) and a plain `mosquitto_sub` (the baseline consumer).
3. `edugap simulate` publishes the fleet's reports (an inventory per device, one speed test and
   one heartbeat per school per day over 7 days); the broker queues them for both sessions.
4. Baseline: `mosquitto_sub` drains its queue to /dev/null. Measured: `edugap serve` starts and
   drains its queue into SQLite (decode, validate, store, ack); then a snapshot covers all.
5. With everything loaded: the collector's memory (RSS), the time to serve /metrics (all, and
   the largest province's shard) and the national shortage CSV (API, and the whole
   `edugap export shortages` command), each next to a static file server sending the same
   bytes; and RSS next to the same collector with an empty store.

Writes bench/results/scale.md. `--quick` runs a tenth of the fleet.

    .venv/bin/python bench/scale.py            # 60,000 schools, 600,000 devices
    .venv/bin/python bench/scale.py --quick    # 6,000 schools, 60,000 devices
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import harness
import psutil
from harness import procs, timed
from harness.procs import Child, edugap_argv, free_port, port_open, run_once, wait_until

from edugap.collector.demo.fleet import build_fleet, write_registry_file
from edugap.collector.demo.procs import broker_child

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost only
# Steady-state load of the default agent schedule: one heartbeat per device every 5 minutes
# dominates (inventory every 6 h and 4 speed tests a day add about 2%).
HEARTBEAT_SECONDS = 300.0
TARGET_SCRAPE_S = 10.0  # Prometheus' default scrape_timeout
TARGET_SHARD_S = 1.0
TARGET_EXPORT_S = 10.0
TARGET_RSS_MB = 2048.0


def say(text: str) -> None:
    print(f"scale: {text}", file=sys.stderr, flush=True)


def fetch(url: str, timeout: float = 300.0) -> bytes:
    with _opener.open(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def stored_count(base: str) -> float:
    """Messages the collector has handled (stored + duplicate + rejected)."""
    total = 0.0
    for line in fetch(f"{base}/metrics?collector=1", 30).decode().splitlines():
        if line.startswith("edugap_collector_messages_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric(base: str, name: str) -> float | None:
    for line in fetch(f"{base}/metrics?collector=1", 30).decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 1024 / 1024


@dataclass
class Run:
    """Everything measured, for the results file."""

    schools: int
    devices: int
    quick: bool
    runs: int
    command: str
    import_s: float = 0.0
    published: int = 0
    publish_s: float = 0.0
    baseline_drain_s: float = 0.0
    drain_s: float = 0.0
    snapshot_s: float | None = None
    rss_mb: float = 0.0
    rss_empty_mb: float = 0.0
    db_mb: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)
    measured: dict[str, list[float]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    province: str = ""
    load_before: float = field(default_factory=harness.load_average)


def start_serve(work: Path, name: str, mqtt_url: str, db: str, port: int) -> Child:
    args = ["serve", "--broker", mqtt_url, "--db", db, "--listen", f"127.0.0.1:{port}"]
    args += ["--snapshot-interval", "30", "--client-id", f"scale-{name}", "--group", name]
    child = Child(f"edugap serve ({name})", edugap_argv(*args), work / f"serve-{name}.log")
    child.start()
    wait_until(lambda: port_open(port), 120, f"edugap serve ({name})", child)
    return child


def static_server(directory: Path, port: int, log: Path) -> Child:
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(directory)]
    child = Child("static file server", argv, log).start()
    wait_until(lambda: port_open(port), 30, "the static file server", child)
    return child


def run(args: argparse.Namespace, work: Path) -> Run:
    schools = args.schools or (6000 if args.quick else 60000)
    per = args.devices_per_school
    runs = args.runs or (3 if args.quick else 5)
    result = Run(schools, schools * per, args.quick, runs, harness.command_line("scale"))
    with procs.started() as children:
        mqtt_port = free_port()
        # the demo's broker: no persistence, a queue deep enough for the whole fleet's reports
        broker, _ = broker_child("mosquitto", work / "broker", mqtt_port)
        children.append(broker.start())
        wait_until(lambda: port_open(mqtt_port), 20, "mosquitto", broker)
        mqtt_url = f"mqtt://127.0.0.1:{mqtt_port}"

        fleet = build_fleet(schools, per, seed=1)
        reporting = sum(1 for s in fleet if s.profile.monitoring != "never")
        registry = work / "registry.csv"
        write_registry_file(registry, (s.school for s in fleet))
        db = str(work / "scale.db")
        started = time.perf_counter()
        run_once(edugap_argv("schools", "import", str(registry), "--db", db), work / "import.log",
                 "registry import")  # fmt: skip
        result.import_s = time.perf_counter() - started
        say(f"imported {schools} schools in {result.import_s:.1f}s")

        # The two sessions that will queue every report while their consumers are away.
        port = free_port()
        first = start_serve(work, "edugap", mqtt_url, db, port)
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}"), 120, "collector ready", first)
        first.stop()
        sub = ["mosquitto_sub", "-p", str(mqtt_port), "-h", "127.0.0.1", "-V", "mqttv311"]
        sub += ["-c", "-i", "scale-baseline", "-q", "1", "-t", "edugap/v1/#"]
        subprocess.run([*sub, "-E"], check=True, timeout=30)

        say(f"publishing the reports of {schools} schools, {schools * per} devices")
        simulate = edugap_argv("simulate", "--schools", str(schools), "--devices-per-school",
                               str(per), "--broker", mqtt_url, "--seed", "1",
                               "--tests-per-day", "1", "--heartbeats-per-day", "1")  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(simulate, capture_output=True, text=True, check=False)
        result.publish_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"edugap simulate failed: {done.stderr[-1500:]}")
        last = done.stderr.strip().splitlines()[-1]
        result.published = int(last.split("published ", 1)[1].split(" ", 1)[0])
        say(last)

        started = time.perf_counter()
        with (work / "baseline.out").open("wb") as sink:
            subprocess.run([*sub, "-C", str(result.published)], stdout=sink, check=True,
                           timeout=3600)  # fmt: skip
        result.baseline_drain_s = time.perf_counter() - started
        say(f"baseline consumer drained {result.published} in {result.baseline_drain_s:.1f}s")

        started = time.perf_counter()
        serve = start_serve(work, "edugap", mqtt_url, db, port)
        children.append(serve)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(base), 300, "collector ready", serve)
        wait_until(lambda: stored_count(base) >= result.published, 3600, "ingest", serve)
        result.drain_s = time.perf_counter() - started
        say(f"collector stored {result.published} in {result.drain_s:.1f}s")
        wait_until(lambda: _covered(base) >= reporting, 600, "a snapshot of everything", serve)
        result.snapshot_s = metric(base, "edugap_collector_snapshot_duration_seconds")
        result.rss_mb = rss_mb(serve.proc.pid if serve.proc else 0)
        result.db_mb = sum(p.stat().st_size for p in work.glob("scale.db*")) / 1024 / 1024

        province = max(
            (s.school.province for s in fleet), key=[s.school.province for s in fleet].count
        )
        result.province = province
        quoted = urllib.parse.quote(province)
        paths = {
            "metrics": "/metrics",
            "shard": f"/metrics?province={quoted}",
            "shortages": "/api/v1/shortages?format=csv",
        }
        static = work / "static"
        static.mkdir()
        for key, path in paths.items():
            body = fetch(base + path)
            result.sizes[key] = len(body)
            (static / f"{key}.txt").write_bytes(body)
            result.measured[key] = timed(lambda p=path: fetch(base + p), runs)  # type: ignore[misc]
            median = statistics.median(result.measured[key])
            say(f"{path}: {len(body) / 1e6:.1f} MB, median {median:.3f}s")
        export = edugap_argv("export", "shortages", "--db", db, "--format", "csv", "-o",
                             str(work / "export.csv"))  # fmt: skip
        result.measured["cli"] = timed(lambda: subprocess.run(export, capture_output=True,
                                                              check=True), runs)  # fmt: skip
        serve.stop()

        sport = free_port()
        children.append(static_server(static, sport, work / "static.log"))
        for key in paths:
            url = f"http://127.0.0.1:{sport}/{key}.txt"
            result.baseline[key] = timed(lambda u=url: fetch(u), runs)  # type: ignore[misc]

        # The same collector with an empty store: what the fleet's state costs in memory.
        eport = free_port()
        empty = start_serve(work, "empty", mqtt_url, str(work / "empty.db"), eport)
        children.append(empty)
        wait_until(lambda: _ready(f"http://127.0.0.1:{eport}"), 120, "empty collector", empty)
        result.rss_empty_mb = rss_mb(empty.proc.pid if empty.proc else 0)
        return result


def _ready(base: str) -> bool:
    try:
        fetch(f"{base}/readyz", 5)
        return True
    except OSError:
        return False


def _covered(base: str) -> int:
    import json

    doc = json.loads(fetch(f"{base}/api/v1/provinces", 60))
    return sum(
        int(p["schools"]) - int(p["by_monitoring"].get("never", 0)) for p in doc["provinces"]
    )


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:,.0f} ms" for v in values)


def results(r: Run) -> str:
    """The results section as Markdown."""
    med = {k: statistics.median(v) for k, v in r.measured.items()}
    base = {k: statistics.median(v) for k, v in r.baseline.items()}
    need_rate = r.devices / HEARTBEAT_SECONDS
    drain_rate = r.published / r.drain_s if r.drain_s else 0.0
    base_rate = r.published / r.baseline_drain_s if r.baseline_drain_s else 0.0

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    def row(label: str, key: str, target: float) -> str:
        ratio = med[key] / base[key] if base.get(key) else float("nan")
        return (
            f"| {label} ({r.sizes[key] / 1e6:.1f} MB) | {med[key] * 1000:,.0f} ms | "
            f"{base[key] * 1000:,.0f} ms | {ratio:.1f}x | < {target:g} s | "
            f"{verdict(med[key] < target)} |"
        )

    size = "a tenth of the full fleet (--quick)" if r.quick else "the full fleet"
    lines = [
        f"## Scale: {r.schools:,} schools, {r.devices:,} devices, one collector on SQLite",
        "",
        f"- Machine: {harness.machine_line(*harness.versions(mosquitto=True, sqlite=True))}",
        f"- Command: `{r.command}` ({size}; {r.runs} runs of each timing, medians)",
        f"- Load: {r.published:,} reports ({r.devices:,} inventories, one speed test and one "
        f"heartbeat per school per day over 7 days) published by `edugap simulate` into "
        f"Mosquitto in {r.publish_s:.0f} s ({r.published / r.publish_s:,.0f}/s) while no "
        f"consumer ran; registry import {r.import_s:.1f} s.",
        "",
        "| what | measured (edugap serve) | baseline | ratio | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| drain the queued reports into the store | {r.drain_s:,.0f} s ({drain_rate:,.0f}/s) | "
        f"`mosquitto_sub` to /dev/null: {r.baseline_drain_s:,.0f} s ({base_rate:,.0f}/s) | "
        f"{r.drain_s / r.baseline_drain_s:.1f}x | >= {need_rate:,.0f}/s (every device's "
        f"5-minute heartbeat) | {verdict(drain_rate >= need_rate)} |",
        row("full `/metrics`", "metrics", TARGET_SCRAPE_S),
        row(f"`/metrics?province=` {r.province}", "shard", TARGET_SHARD_S),
        row("national shortage CSV, `/api/v1/shortages?format=csv`", "shortages", TARGET_EXPORT_S),
        f"| whole `edugap export shortages --format csv` command | {med['cli']:,.1f} s | - | - | "
        f"< {TARGET_EXPORT_S:g} s | {verdict(med['cli'] < TARGET_EXPORT_S)} |",
        f"| collector memory (RSS) | {r.rss_mb:,.0f} MB | same collector, empty store: "
        f"{r.rss_empty_mb:,.0f} MB | {r.rss_mb / r.rss_empty_mb:.1f}x | < {TARGET_RSS_MB:,.0f} MB "
        f"| {verdict(r.rss_mb < TARGET_RSS_MB)} |",
        "",
        "- Baselines: the HTTP rows' baseline is Python's `http.server` sending the very same "
        "bytes from a file, so the ratio is what the collector adds over moving the bytes.",
        f"- Runs: full /metrics {_ms(r.measured['metrics'])}; shard {_ms(r.measured['shard'])}; "
        f"shortage CSV {_ms(r.measured['shortages'])}; CLI export {_ms(r.measured['cli'])}.",
        "- Policy snapshot of all schools: "
        + (f"{r.snapshot_s:.1f} s" if r.snapshot_s is not None else "not reported")
        + f"; SQLite store on disk: {r.db_mb:,.0f} MB.",
        f"- Machine load: {harness.shared_note(r.load_before, harness.load_average())}.",
        "- Sizing drawn from these figures: docs/scale.md.",
    ]
    return "\n".join(lines) + "\n"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schools", type=int, help="override the number of schools")
    parser.add_argument("--devices-per-school", type=int, default=10)
    parser.add_argument("--runs", type=int, help="timing runs (5, or 3 with --quick)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")


def main() -> int:
    parser = harness.arguments("scale", __doc__, "a tenth of the fleet, 3 runs", options)
    args = parser.parse_args()
    if shutil.which("mosquitto_sub") is None:
        print("scale: needs mosquitto_sub (Debian package mosquitto-clients)", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="edugap-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        harness.write_result(results(run(args, work)), args.out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    harness.main(main)
