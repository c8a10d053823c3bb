"""Benchmark: the self-hosted speed test against iperf3 on a shaped link, with delay and loss.

Each condition is a school's link built by linklab (three network namespaces, tbf rate limits
per direction with a 100 ms queue, a one-way delay and random loss from its delayline; see
its README): `edugap serve` runs in `<name>_srv` (10.211.77.1), the agent's own command
`edugap-agent speedtest --backend selfhosted --server-url http://10.211.77.1:8080/speedtest/`
runs in `<name>_cli`. In the same run, on the same link, the reference: `iperf3 -P 4` (four
streams, `-R` for download, the first 2 s omitted so that the figure is the link's rate, not
TCP's start). Recorded per condition (medians of the runs): download and upload as ratios to
iperf3, latency against the TCP connect time (one round trip: the same measure as a ping,
without needing ping), and the test's `bytes_used` against what the client's interface carried
(`ip -n <name>_cli -s -j link`, received + sent bytes, Ethernet headers included).

A condition is `DOWN[:UP]/RTT[/LOSS%]`: `100/40` is 100 Mbit/s both ways at 40 ms round-trip
time, `20:5/40` is 20 down and 5 up, `20/40/0.5` adds 0.5 % random loss each way.

    .venv/bin/python bench/speedtest_accuracy.py                # all 22 conditions (~60 min)
    .venv/bin/python bench/speedtest_accuracy.py --quick        # 4 conditions, 1 run (~5 min)
    .venv/bin/python bench/speedtest_accuracy.py --conditions 100/40,200/80 --runs 2
    .venv/bin/python bench/speedtest_accuracy.py --resume       # finish an interrupted run
    .venv/bin/python bench/speedtest_accuracy.py --render       # rewrite the .md from the .json

Root only (network namespaces). linklab is `$EDUGAP_LINKLAB`, else the copy in the tree,
tests/linklab/linklab. The linklab name is `--name` (default `bench`), so a bench never
touches another lab.

Writes bench/results/speedtest_accuracy.md, and the raw runs to
bench/results/speedtest_accuracy.json after each condition (`--resume` keeps the conditions
already there). `--save-before` also keeps the run as speedtest_accuracy.before.json, the
"before" figures every later result shows beside its own.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import linklab
from harness.linklab import SERVER, netns
from harness.procs import Child, env_for_child

NAME = "speedtest_accuracy"
HTTP_PORT = 8080
IPERF_PORT = 5201
RATES = (2, 10, 50, 100, 200)
RTTS = (0, 20, 40, 80)
FULL = (
    *(f"{rate}/{rtt}" for rate in RATES for rtt in RTTS),
    "20/40/0.5",
    "20:5/40",
)
QUICK = ("100/0", "20/40", "100/40", "20/40/0.5")
# Goals: ratio to iperf3 within 5 % up to 100 Mbit/s and 40 ms RTT, within 10 % beyond
# (200 Mbit/s, 80 ms); bytes_used within 2 % of the bytes the link carried.
NEAR, FAR, BYTES = 0.05, 0.10, 0.02
IPERF_SECONDS, IPERF_OMIT = 10, 2
AGENT_TIMEOUT = 300.0  # the bench's own limit on one agent run; the agent has its own


@dataclass(frozen=True)
class Condition:
    down: float
    up: float
    rtt_ms: float
    loss_pct: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Condition:
        match = re.fullmatch(r"([\d.]+)(?::([\d.]+))?/([\d.]+)(?:/([\d.]+)%?)?", spec.strip())
        if not match:
            raise ValueError(f"condition {spec!r}: expected DOWN[:UP]/RTT[/LOSS%], e.g. 100/40")
        down, up, rtt, loss = match.groups()
        return cls(float(down), float(up or down), float(rtt), float(loss or 0))

    @property
    def key(self) -> str:
        rates = f"{self.down:g}" if self.up == self.down else f"{self.down:g}:{self.up:g}"
        return f"{rates}/{self.rtt_ms:g}" + (f"/{self.loss_pct:g}" if self.loss_pct else "")

    def label(self) -> str:
        rates = f"{self.down:g}" if self.up == self.down else f"{self.down:g} down / {self.up:g} up"
        loss = f", {self.loss_pct:g} % loss" if self.loss_pct else ""
        return f"{rates} Mbit/s, {self.rtt_ms:g} ms{loss}"

    def tolerance(self) -> float:
        return NEAR if max(self.down, self.up) <= 100 and self.rtt_ms <= 40 else FAR


@dataclass
class Run:
    """One run on one condition: the reference and the agent's test, side by side."""

    iperf_down: float | None = None
    iperf_up: float | None = None
    down: float | None = None
    up: float | None = None
    latency_ms: float | None = None
    bytes_used: int | None = None
    link_bytes: int | None = None  # Ethernet frames, both ways
    link_packets: int | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class Result:
    condition: str
    connect_ms: float | None = None
    runs: list[Run] = field(default_factory=list)


# --- the lab ---------------------------------------------------------------------------------


@contextmanager
def servers(name: str, workdir: Path) -> Iterator[None]:
    """iperf3 -s and `edugap serve` (no broker needed for /speedtest/) in `<name>_srv`."""
    env = env_for_child(
        PYTHONUNBUFFERED="1",
        EDUGAP_SPEEDTEST_REQUESTS_PER_MINUTE="0",  # one client makes many tests here
    )
    children = [
        Child("iperf3", netns(name, "srv", "iperf3", "-s", "-p", str(IPERF_PORT)),
              workdir / "iperf3.log"),
        Child("collector", netns(name, "srv", sys.executable, "-m", "edugap.collector.cli",
              "serve", "--broker", "mqtt://127.0.0.1:1883", "--db", str(workdir / "edugap.db"),
              "--listen", f"{SERVER}:{HTTP_PORT}"), workdir / "collector.log", env=env),
    ]  # fmt: skip
    try:
        for child in children:
            child.start()
        problem = linklab.wait_ports(name, "cli", SERVER, IPERF_PORT, HTTP_PORT)
        if problem:
            tails = "\n".join(f"{c.name}: {c.log_tail()}" for c in children)
            raise RuntimeError(f"servers did not start: {problem}\n{tails}")
        yield
    finally:
        for child in reversed(children):
            child.stop()


def in_client(name: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return linklab.in_ns(name, "cli", code, *args)


def connect_ms(name: str) -> float | None:
    """The median TCP connect time to the collector (one round trip), over 10 connects."""
    done = in_client(
        name,
        "import socket,statistics,sys,time\n"
        "t=[]\n"
        "for _ in range(10):\n"
        "    s=time.perf_counter(); socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"
        ".close(); t.append((time.perf_counter()-s)*1000); time.sleep(0.05)\n"
        "print(statistics.median(t))\n",
        SERVER, str(HTTP_PORT),
    )  # fmt: skip
    try:
        return float(done.stdout.strip())
    except ValueError:
        return None


# --- one run ---------------------------------------------------------------------------------


def iperf(name: str, reverse: bool) -> float | None:
    """iperf3 -P 4 on the link: the received Mbit/s after the first IPERF_OMIT seconds."""
    argv = ["iperf3", "-c", SERVER, "-p", str(IPERF_PORT), "-P", "4", "-J", "-t",
            str(IPERF_SECONDS), "-O", str(IPERF_OMIT), *(["-R"] if reverse else [])]  # fmt: skip
    try:
        done = subprocess.run(
            netns(name, "cli", *argv), capture_output=True, text=True, timeout=60, check=False
        )
        bps = json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]
        return float(bps) / 1e6
    except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as e:
        print(f"  iperf3 {'-R ' if reverse else ''}failed: {e}", file=sys.stderr, flush=True)
        return None


def parse_agent(stdout: str) -> dict[str, Any]:
    """The agent's report: its JSON (`--json`) where printed, else its `name: value` lines."""
    start = stdout.find("\n{")
    if stdout.startswith("{"):
        start = 0
    if start >= 0:
        try:
            found = json.JSONDecoder().raw_decode(stdout[start:].lstrip())[0]
            if isinstance(found, dict):
                return dict(found)
        except ValueError:
            pass
    report: dict[str, Any] = {}
    units = {"download": "download_mbps", "upload": "upload_mbps", "latency": "latency_ms"}
    for line in stdout.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        number = re.match(r"[\d.]+", value)
        if key in units and number:
            report[units[key]] = float(number.group())
        elif key == "data used" and number:
            report["bytes_used"] = int(float(number.group()) * 1e6)
        elif key == "error":
            report["error"] = value
    return report


def agent_test(name: str, workdir: Path) -> Run:
    """One `edugap-agent speedtest` in `<name>_cli`, a fresh state directory (today's budget
    unspent), the client interface's byte counters read around it."""
    state = Path(tempfile.mkdtemp(prefix="agent-", dir=workdir))
    env = env_for_child(EDUGAP_AGENT_STATE_DIR=str(state))
    argv = [sys.executable, "-m", "edugap.agent.cli", "speedtest", "--backend", "selfhosted",
            "--server-url", f"http://{SERVER}:{HTTP_PORT}/speedtest/", "--json"]  # fmt: skip
    before, before_packets = linklab.link_bytes(name)
    start = time.monotonic()
    try:
        done = subprocess.run(
            netns(name, "cli", *argv), capture_output=True, text=True, env=env,
            timeout=AGENT_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Run(error=f"no answer in {AGENT_TIMEOUT:g} s", seconds=AGENT_TIMEOUT)
    seconds = time.monotonic() - start
    after, after_packets = linklab.link_bytes(name)
    carried, packets = after - before, after_packets - before_packets
    report = parse_agent(done.stdout)
    error = report.get("error")
    if not report:
        error = f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    used = report.get("bytes_used")
    return Run(
        down=report.get("download_mbps"),
        up=report.get("upload_mbps"),
        latency_ms=report.get("latency_ms"),
        bytes_used=int(used) if used is not None else None,
        link_bytes=carried,
        link_packets=packets,
        seconds=seconds,
        error=str(error) if error else None,
    )


def measure(lab_path: str, name: str, cond: Condition, runs: int, workdir: Path) -> Result:
    result = Result(cond.key)
    lab = linklab.link(lab_path, name, cond.down, cond.up, cond.rtt_ms, cond.loss_pct / 100)
    with lab, servers(name, workdir):
        result.connect_ms = connect_ms(name)
        for i in range(runs):
            reference = (iperf(name, reverse=True), iperf(name, reverse=False))
            run = agent_test(name, workdir)
            run.iperf_down, run.iperf_up = reference
            result.runs.append(run)
            print(f"  {cond.key} run {i + 1}: {asdict(run)}", flush=True)
    return result


# --- the table -------------------------------------------------------------------------------


def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Row:
    cond: Condition
    iperf_down: float | None
    iperf_up: float | None
    down: float | None
    up: float | None
    latency: float | None
    connect: float | None
    bytes_ratio: float | None
    used_mb: float | None
    failed: int
    runs: int

    @classmethod
    def of(cls, result: Result) -> Row:
        rs = result.runs
        ratios = [r.bytes_used / r.link_bytes for r in rs if r.bytes_used and r.link_bytes]
        return cls(
            Condition.parse(result.condition),
            med([r.iperf_down for r in rs]),
            med([r.iperf_up for r in rs]),
            med([r.down for r in rs]),
            med([r.up for r in rs]),
            med([r.latency_ms for r in rs]),
            result.connect_ms,
            statistics.median(ratios) if ratios else None,
            med([r.link_bytes / 1e6 if r.link_bytes else None for r in rs]),
            sum(1 for r in rs if r.error or r.down is None or r.up is None),
            len(rs),
        )

    def down_ratio(self) -> float | None:
        return ratio(self.down, self.iperf_down)

    def up_ratio(self) -> float | None:
        return ratio(self.up, self.iperf_up)

    def met(self) -> bool:
        tol = self.cond.tolerance()
        speeds = [self.down_ratio(), self.up_ratio()]
        return (
            self.failed == 0
            and all(r is not None and abs(r - 1) <= tol for r in speeds)
            and self.bytes_ratio is not None
            and abs(self.bytes_ratio - 1) <= BYTES
        )


def ratio(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else value / reference


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pct(r: float | None) -> str:
    return "n/a" if r is None else f"{(r - 1) * 100:+.1f} %"


def order(row: Row) -> tuple[bool, float, float, float, float]:
    """Symmetric links by rate then round-trip time; loss and asymmetric links last."""
    c = row.cond
    return (bool(c.loss_pct) or c.up != c.down, c.down, c.up, c.rtt_ms, c.loss_pct)


def render_table(results: list[Result], before: list[Result] | None = None) -> tuple[str, bool]:
    """The table, and whether every row met the goal; with `before`, a column of the before
    figures of the same conditions (download, upload and bytes, as differences)."""
    rows = sorted((Row.of(r) for r in results), key=order)
    then = {r.condition: Row.of(r) for r in before or []}

    def was(row: Row) -> list[str]:
        if before is None:
            return []
        old = then.get(row.cond.key)
        if old is None:
            return ["not measured"]
        return [f"{pct(old.down_ratio())} / {pct(old.up_ratio())} / {pct(old.bytes_ratio)}"]

    body = [
        [
            row.cond.label(),
            f"{fmt(row.down)} / {fmt(row.iperf_down)} ({pct(row.down_ratio())})",
            f"{fmt(row.up)} / {fmt(row.iperf_up)} ({pct(row.up_ratio())})",
            f"{fmt(row.latency)} / {fmt(row.connect)}",
            f"{pct(row.bytes_ratio)} of {fmt(row.used_mb)} MB",
            f"{row.failed} of {row.runs}",
            "yes" if row.met() else "**no**",
            *was(row),
        ]
        for row in rows
    ]
    header = (
        "link (Mbit/s, RTT)",
        "download edugap / iperf3",
        "upload edugap / iperf3",
        "latency / TCP connect (ms)",
        "bytes_used vs link bytes",
        "tests failed",
        "within goal",
        *(["before: download / upload / bytes"] if before is not None else []),
    )
    return harness.table(header, body), all(row.met() for row in rows)


def tally(results: list[Result]) -> str:
    """How many conditions met each part of the goal, in a sentence."""
    rows = [Row.of(r) for r in results]

    def speeds_ok(row: Row) -> bool:
        tol = row.cond.tolerance()
        return all(r is not None and abs(r - 1) <= tol for r in (row.down_ratio(), row.up_ratio()))

    speeds = sum(speeds_ok(row) for row in rows)
    nbytes = sum(row.bytes_ratio is not None and abs(row.bytes_ratio - 1) <= BYTES for row in rows)
    failed = sum(row.failed for row in rows)
    runs = sum(row.runs for row in rows)
    return (
        f"download and upload within the goal in {speeds} of {len(rows)} conditions, "
        f"`bytes_used` within {BYTES:.0%} in {nbytes} of {len(rows)}; {failed} of {runs} tests "
        "failed."
    )


def header_share(results: list[Result]) -> str:
    """What the Ethernet headers were of the link bytes, when the packets were counted."""
    shares = [
        14 * r.link_packets / r.link_bytes
        for result in results
        for r in result.runs
        if r.link_packets and r.link_bytes
    ]
    if not shares:
        return ""
    return (
        f" Of the link bytes, the 14-byte Ethernet headers were {min(shares):.1%} to "
        f"{max(shares):.1%} (IP bytes are the rest)."
    )


def code_version() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(harness.ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    code = git("log", "-1", "--format=%h of %cs", "--", "edugap")
    head = git("log", "-1", "--format=%h")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    dirty = ", with uncommitted changes" if git("status", "--porcelain", "--", "edugap") else ""
    if not code:
        return "unknown"
    return f"edugap/ as of commit {code} (its last change; checkout {head}, branch {branch}{dirty})"


def render(state: dict[str, Any], before: dict[str, Any] | None) -> str:
    results = [result_of(r) for r in state["results"]]
    load = state.get("load") or (harness.load_average(), harness.load_average())
    earlier = [result_of(r) for r in before["results"]] if before is not None else None
    table, met = render_table(results, earlier)
    before_text = ""
    if before is not None:
        before_results = [result_of(r) for r in before["results"]]
        before_table, _ = render_table(before_results)
        before_text = f"""
### Before: {before["version"]}

Command: `{before["command"]}` ({runs_text(before["runs"])}); {before["when"]}.

{before_table}

Before: {tally(before_results)}
"""
    return f"""## Speed-test accuracy (self-hosted backend, on a shaped link)

What: on linklab's shaped link (tbf per direction with a 100 ms queue, one-way delay RTT/2 and
random loss from its delayline; three network namespaces), `edugap-agent speedtest --backend
selfhosted` in the client namespace against `edugap serve`'s /speedtest/ in the server
namespace, each run next to the reference on the same link: iperf3 -P 4 for {IPERF_SECONDS} s,
the first {IPERF_OMIT} s omitted (`-R` for download). Latency is compared with the TCP connect
time (one round trip, like a ping); `bytes_used` with the bytes the client's interface received
and sent during the test (Ethernet headers included).{header_share(results)}

Code measured: {state["version"]}.

Machine: {harness.machine_line()}, {_iperf_version()};
{harness.shared_note(*load)} (delayline forwards every packet in user space, so at
200 Mbit/s the link itself needs CPU).

Command: `{state["command"]}` ({runs_text(state["runs"])}); {state["when"]}.

{table}

Goal: download and upload within {NEAR:.0%} of iperf3 up to 100 Mbit/s and 40 ms RTT, within
{FAR:.0%} at 200 Mbit/s or 80 ms; `bytes_used` within {BYTES:.0%} of the bytes on the link; no
failed test.

Against the goal: {harness.verdict(met)}; {tally(results)}
{before_text}"""


def runs_text(runs: int) -> str:
    return "1 run per condition" if runs == 1 else f"{runs} runs per condition; medians"


def _iperf_version() -> str:
    done = subprocess.run(["iperf3", "--version"], capture_output=True, text=True, check=False)
    words = done.stdout.split()
    return f"iperf {words[1]}" if len(words) > 1 else "iperf3"


def result_of(raw: dict[str, Any]) -> Result:
    return Result(raw["condition"], raw.get("connect_ms"), [Run(**r) for r in raw["runs"]])


# --- main ------------------------------------------------------------------------------------


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, help="runs per condition (default 3, quick 1)")
    parser.add_argument(
        "--conditions",
        help="comma-separated DOWN[:UP]/RTT[/LOSS%%] (default all 22; quick: "
        + ",".join(QUICK) + ")",
    )  # fmt: skip
    parser.add_argument("--name", default="bench", help="the linklab name (default bench)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the conditions already in the .json"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write the results file again from the .json files",
    )
    parser.add_argument(
        "--save-before",
        action="store_true",
        help="also keep this run as the before figures (speedtest_accuracy.before.json)",
    )


def main() -> int:
    parser = harness.arguments(NAME, __doc__, "4 conditions, 1 run", options)
    args = parser.parse_args()
    try:
        specs = args.conditions.split(",") if args.conditions else (QUICK if args.quick else FULL)
        conditions = [Condition.parse(s) for s in specs]
    except ValueError as e:
        parser.error(str(e))
    lab_path = "" if args.render else linklab.require(("iperf3", "iperf3"))
    runs = args.runs or (1 if args.quick else 3)
    raw_path = args.out.with_suffix(".json")
    before_path = args.out.with_suffix(".before.json")
    state: dict[str, Any] = {
        "version": code_version(),
        "command": harness.command_line(NAME),
        "runs": runs,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": [],
    }
    if args.resume and raw_path.exists():
        previous = json.loads(raw_path.read_text())
        previous["command"] += f"`, resumed with `{state['command']}"
        state = previous
    if args.render:
        return write(state_of(raw_path), args)
    done = {r["condition"] for r in state["results"]}
    load_before = (state.get("load") or [harness.load_average()])[0]
    with tempfile.TemporaryDirectory(prefix="edugap-speedtest-bench-") as tmp:
        for cond in conditions:
            if cond.key in done:
                print(f"{cond.key}: kept from the previous run", flush=True)
                continue
            print(f"{cond.key}: {cond.label()}", flush=True)
            workdir = Path(tmp) / cond.key.replace("/", "_").replace(":", "x")
            workdir.mkdir()
            try:
                result = measure(lab_path, args.name, cond, runs, workdir)
            except (RuntimeError, subprocess.CalledProcessError) as e:
                print(f"{cond.key}: not measured: {e}", file=sys.stderr, flush=True)
                continue
            state["results"].append(asdict(result))
            state["load"] = [load_before, harness.load_average()]
            raw_path.parent.mkdir(parents=True, exist_ok=True)
            raw_path.write_text(json.dumps(state, indent=1) + "\n")
            if args.save_before:
                before_path.write_text(json.dumps(state, indent=1) + "\n")
            write(state, args, quiet=True)
    return write(state, args)


def state_of(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"{path} does not exist: nothing to render")
    return dict(json.loads(path.read_text()))


def write(state: dict[str, Any], args: argparse.Namespace, quiet: bool = False) -> int:
    """The results file from `state`, with the before figures unless this run is them."""
    before_path = args.out.with_suffix(".before.json")
    before = None
    if before_path.exists() and not args.save_before:
        before = json.loads(before_path.read_text())
        if before and (before["when"], before["command"]) == (state["when"], state["command"]):
            before = None  # this run is the before: shown once
    text = render(state, before)
    if quiet:
        args.out.write_text(text)
    else:
        harness.write_result(text, args.out)
    return 0


if __name__ == "__main__":
    harness.main(main)
