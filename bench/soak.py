"""Soak: reports at a steady rate through the shipped broker into a collector on PostgreSQL, for
many minutes, while the broker, the collector and the database are restarted on a schedule and
poison arrives every minute; then every report sent is counted against what was stored.

All on this machine, each part a real process:

- Mosquitto running deploy/mosquitto/mosquitto.conf as shipped (TLS listener with a password
  per school and the per-school ACL, persistence), on free ports;
- `edugap serve`, a lone collector (its own persistent subscription), on a private PostgreSQL
  (its own data directory, the machine's /usr/lib/postgresql/<major>/bin) that nobody else uses,
  so restarting it disturbs nobody;
- schools that behave like agents (bench/harness/agents.py: the agent's own Publisher and
  Drain): each its own TLS connection and credentials; a report leaves its queue only on a
  PUBACK that is neither a failure nor 0x10 "No matching subscribers"; they reconnect.

In turn, one every `--fault-every` seconds: the broker restarted (SIGTERM, start), the collector
stopped with SIGTERM and started, PostgreSQL shut down (fast) and started, the collector killed
(SIGKILL) and started, PostgreSQL crashed (immediate) and started. A poison message every
`--poison-every` seconds from a school of its own, in turn: a report of year 0 in UTC, an
overflow burst (1,100 heartbeats of one school and hour at the largest counts the protocol
allows), a duplicate JSON key, junk bytes. At the end the publishers drain their queues and
the store is read: sent, stored, rejected by reason, stored twice, and lost (sent and valid,
not stored). 0 lost is the bar.

    .venv/bin/python bench/soak.py                          # 30 minutes at 2,000 reports/s
    .venv/bin/python bench/soak.py --minutes 10 --rate 1000
    .venv/bin/python bench/soak.py --quick                  # 1 minute at 1,000 reports/s

Writes bench/results/soak.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import msgspec
import psutil
import psycopg
from harness.agents import AgentLike, Fleet, FleetConfig, device_of, publisher_process
from harness.parts import COLLECTOR_USER, ShippedBroker
from harness.pgserver import Mode, PrivatePostgres
from harness.procs import Child, edugap_argv, env_for_child, free_port, wait_until

from edugap.protocol.messages import MAX_COUNT, Report, encode, topic_for
from tests.collector.reports import bandwidth, heartbeat, inventory

POISON_SCHOOL = "SOAK-POISON"
BURST = 1100  # heartbeats of one school and hour: 1,024 overflowed the hour's sum before
FAULTS = ("broker restart", "collector SIGTERM", "PostgreSQL fast restart",
          "collector SIGKILL", "PostgreSQL crash (immediate)")  # fmt: skip
POISONS = ("year 0", "overflow burst", "duplicate key", "junk")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost only


def kind_of(seq: int) -> str:
    """The kind of a school's seq-th report: 80 % heartbeats, 15 % speed tests, 5 % inventories."""
    slot = seq % 20
    return "heartbeat" if slot < 16 else "bandwidth" if slot < 19 else "inventory"


def report(school: str, seq: int, now: datetime) -> Report:
    """A school's seq-th report (publisher processes import this: `soak:report`)."""
    kind = kind_of(seq)
    if kind == "heartbeat":
        made: Report = heartbeat(school, device_of(school), now, checks=12, ok=11)
    elif kind == "bandwidth":
        made = bandwidth(school, device_of(school), now, down=5.0 + seq % 90)
    else:
        made = inventory(school, device_of(school), now, memory_mb=2048 * (1 + seq % 4))
    return msgspec.structs.replace(made, report_id=report_id(school, seq))


def report_id(school: str, seq: int) -> str:
    return f"soak-{school}-{seq:09d}"


@dataclass
class Happened:
    """A fault, and how long until the part was back (the collector: ready again)."""

    at: float
    what: str
    back_in: float


@dataclass
class Soak:
    """The parts of one soak and what it saw."""

    args: argparse.Namespace
    work: Path
    pg: PrivatePostgres
    broker: ShippedBroker
    collector: Child
    http: str
    poison: AgentLike
    poison_fleet: Fleet
    faults: list[Happened] = field(default_factory=list)
    poisons: Counter[str] = field(default_factory=Counter)
    burst_seqs: list[int] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)  # collector counters of past lifetimes
    last: dict[str, float] = field(default_factory=dict)  # ... and of the running one
    publishers: list[Child] = field(default_factory=list)
    cpu: dict[tuple[str, int], float] = field(default_factory=dict)  # (part, pid) -> CPU s

    def sample_cpu(self) -> None:
        """CPU seconds each part used so far (a process and its children; a part restarted
        is a new pid, and what its last seconds used before a kill is not seen)."""
        pids = [("collector", self.collector.pid), ("PostgreSQL", _pid(self.pg.proc)),
                ("Mosquitto", _pid(self.broker.proc))]  # fmt: skip
        pids += [("publishers", c.pid) for c in self.publishers]
        for part, pid in pids:
            if pid is None:
                continue
            try:
                proc = psutil.Process(pid)
                used = sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(True)])
            except psutil.Error:
                continue
            self.cpu[part, pid] = max(used, self.cpu.get((part, pid), 0.0))

    def cpu_by_part(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (part, _pid), used in self.cpu.items():
            out[part] = out.get(part, 0.0) + used
        return out

    # --- the collector ---------------------------------------------------------------------

    def scrape(self) -> None:
        """Remember the running collector's message counters (a kill loses what came since)."""
        try:
            with _opener.open(f"{self.http}/metrics?collector=1", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("edugap_collector_messages_total{"):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                self.last[result] = float(line.rsplit(" ", 1)[1])

    def restart_collector(self, signum: int) -> None:
        self.scrape()
        self.sample_cpu()
        self.seen.update({k: int(v) for k, v in self.last.items()})
        self.last = {}
        self.collector.stop_signal = signum
        self.collector.stop(timeout=60)
        self.collector.stop_signal = signal.SIGTERM
        self.collector.start()
        self.wait_ready(120)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            try:
                with _opener.open(f"{self.http}/readyz", timeout=5) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout, "the collector to be ready", self.collector)

    # --- faults and poison -----------------------------------------------------------------

    def fault(self, n: int, at: float) -> None:
        what = FAULTS[n % len(FAULTS)]
        began = time.monotonic()
        self.sample_cpu()
        if what == "broker restart":
            self.broker.restart()
        elif what.startswith("collector"):
            self.restart_collector(signal.SIGKILL if "KILL" in what else signal.SIGTERM)
        else:
            mode: Mode = "immediate" if "immediate" in what else "fast"
            self.pg.restart(mode)
        self.faults.append(Happened(at, what, time.monotonic() - began))
        say(f"{at:6.0f} s {what}, back in {time.monotonic() - began:.1f} s")

    def poison_once(self, n: int) -> None:
        what = POISONS[n % len(POISONS)]
        self.poisons[what] += 1
        agent, now, device = self.poison, datetime.now(UTC), device_of(POISON_SCHOOL)
        topic = topic_for(POISON_SCHOOL, device, "heartbeat")
        valid = encode(heartbeat(POISON_SCHOOL, device, now))
        if what == "year 0":  # year 0 in UTC: once stopped ingest for good (issue 7)
            raw = msgspec.json.decode(valid)
            raw["measured_at"] = "0001-01-01T00:00:00+01:00"
            payloads = [msgspec.json.encode(raw)]
        elif what == "duplicate key":
            payloads = [b'{"school_id":"' + POISON_SCHOOL.encode() + b'",' + valid[1:]]
        elif what == "junk":
            payloads = [random.Random(n).randbytes(200)]
        else:
            first = len(self.burst_seqs) + 1
            self.burst_seqs.extend(range(first, first + BURST))

            def burst() -> None:
                for seq in range(first, first + BURST):
                    beat = heartbeat(POISON_SCHOOL, device, now, checks=MAX_COUNT, ok=MAX_COUNT)
                    agent.put(
                        msgspec.structs.replace(beat, report_id=report_id(POISON_SCHOOL, seq))
                    )

            self.poison_fleet.call(burst)
            return
        for payload in payloads:
            self.poison_fleet.call(lambda p=payload: agent.put_raw(what, topic, p))  # type: ignore[misc]


def _pid(proc: Any) -> int | None:
    return None if proc is None else int(proc.pid)


def machine_note() -> str:
    return harness.machine_line(*harness.versions(mosquitto=True, packages=("paho-mqtt",)))


def say(text: str) -> None:
    print(f"soak: {text}", flush=True)


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start everything, run the schedule, drain, stop, read the store: the figures."""
    schools = [f"SOAK-{i:04d}" for i in range(args.schools)]
    say(f"{args.schools} schools, {args.rate:,.0f} reports/s for {args.minutes:g} min")
    with PrivatePostgres() as pg:
        pg_url = pg.create_database("edugap")
        broker = ShippedBroker(work / "broker", [*schools, POISON_SCHOOL], [COLLECTOR_USER])
        broker.start()
        try:
            return soak(args, work, pg, pg_url, broker, schools)
        finally:
            broker.stop()


def soak(
    args: argparse.Namespace,
    work: Path,
    pg: PrivatePostgres,
    pg_url: str,
    broker: ShippedBroker,
    schools: list[str],
) -> dict[str, Any]:
    port = free_port()
    serve = edugap_argv("serve", "--broker", broker.url(COLLECTOR_USER), "--db", pg_url,
                        "--listen", f"127.0.0.1:{port}", "--name", "soak")  # fmt: skip
    collector = Child("edugap serve", serve, work / "collector.log", env=env_for_child()).start()
    settings = broker.settings(POISON_SCHOOL)
    poison = AgentLike(POISON_SCHOOL, settings, random.Random(2))
    s = Soak(args, work, pg, broker, collector, f"http://127.0.0.1:{port}", poison,
             Fleet([poison], 0.0, report))  # fmt: skip
    publishers = s.publishers
    try:
        s.wait_ready(120)
        tls = broker.settings(schools[0])
        connection = {"host": tls.host, "port": tls.port, "tls": True, "ca_file": tls.ca_file}
        share = [schools[i :: args.publishers] for i in range(args.publishers)]
        for i, part in enumerate(share):
            config = FleetConfig(
                broker=connection, schools=[(x, broker.users[x]) for x in part],
                rate=args.rate / args.schools, maker="soak:report",
                stop_file=str(work / "stop"), result_file=str(work / f"publisher{i}.out.json"),
                drain_seconds=args.drain_seconds, seed=i + 1,
            )  # fmt: skip
            publishers.append(publisher_process(f"publisher{i}", config, work).start())
        s.poison_fleet.start()
        began = time.monotonic()
        schedule(s, args.minutes * 60)
        s.sample_cpu()
        (work / "stop").touch()
        s.poison_fleet.stop_generating()
        say("stopped generating; the agents drain their queues")
        drained_at = time.monotonic()
        for child in publishers:
            s.sample_cpu()
            wait_until(lambda c=child: not c.running(), args.drain_seconds + 120,  # type: ignore[misc]
                       f"{child.name} to drain and finish", None)  # fmt: skip
        poison_drained = s.poison_fleet.wait_drained(args.drain_seconds)
        counts = [json.loads((work / f"{c.name}.out.json").read_text()) for c in publishers]
        counts.append({**s.poison_fleet.counts(), "drained": poison_drained})
        expected = expected_ids(counts, s.burst_seqs)
        settle(pg_url, len(expected), args.drain_seconds)
        drain_s = time.monotonic() - drained_at
        s.scrape()
        s.sample_cpu()
        s.seen.update({k: int(v) for k, v in s.last.items()})
        collector.stop(timeout=60)
        return {**figures(s, pg_url, counts, expected, drain_s),
                "elapsed_s": time.monotonic() - began}  # fmt: skip
    finally:
        (work / "stop").touch()
        for child in publishers:
            child.stop(timeout=30)
        s.poison_fleet.close()
        collector.stop(timeout=60)


def schedule(s: Soak, seconds: float) -> None:
    """Faults and poison on their clocks until `seconds` have passed; a scrape every 5 s."""
    began = time.monotonic()
    next_fault, faults = s.args.fault_every, 0
    next_poison, poisons = s.args.poison_every / 2, 0
    next_scrape, next_word = 5.0, 60.0
    while (now := time.monotonic() - began) < seconds:
        if now >= next_fault:
            s.fault(faults, now)
            faults += 1
            next_fault += s.args.fault_every
        elif now >= next_poison:
            s.poison_once(poisons)
            poisons += 1
            next_poison += s.args.poison_every
        elif now >= next_scrape:
            s.scrape()
            s.sample_cpu()
            next_scrape = now + 5
            if now >= next_word:
                say(f"{now:6.0f} s the collector stored {s.last.get('stored', 0):,.0f} since it "
                    "last started")  # fmt: skip
                next_word += 60
        else:
            time.sleep(min(0.5, max(0.0, min(next_fault, next_poison, next_scrape) - now)))


def expected_ids(counts: list[dict[str, Any]], burst_seqs: list[int]) -> set[str]:
    """Every valid report id the agents put in their queues."""
    ids: set[str] = set()
    for part in counts:
        for school, c in part["schools"].items():
            if school == POISON_SCHOOL:
                ids.update(report_id(school, seq) for seq in burst_seqs)
            else:
                made = sum(c["sent"].values())
                ids.update(report_id(school, seq) for seq in range(1, made + 1))
    return ids


def stored_ids(pg_url: str) -> set[str]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT report_id FROM report_ids WHERE report_id LIKE 'soak-%'")
        return {r[0] for r in rows}


def settle(pg_url: str, expected: int, timeout: float) -> None:
    """Wait until the store holds every expected report, or its count stops moving for 60 s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM report_ids WHERE report_id LIKE 'soak-%'")
            count = int(row.fetchone()[0])  # type: ignore[index]
        if count >= expected:
            return
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 60:
            return
        time.sleep(1)


def figures(
    s: Soak, pg_url: str, counts: list[dict[str, Any]], expected: set[str], drain_s: float
) -> dict[str, Any]:
    """What the store holds against what was sent."""
    stored = stored_ids(pg_url)
    schools = [x for part in counts for x in part["schools"]]
    with psycopg.connect(pg_url) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (school_id, report_id)) FROM bandwidth"
        ).fetchone() or (0, 0)
        beats = conn.execute(
            "SELECT coalesce(sum(heartbeats), 0) FROM heartbeat_hours WHERE school_id = ANY(%s)",
            (schools,),
        ).fetchone()
        reasons = conn.execute("SELECT reason, count(*) FROM rejects GROUP BY reason")
        rejects: dict[str, int] = {r[0]: int(r[1]) for r in reasons}
    stored_beats = sum(1 for rid in stored & expected if _is_heartbeat(rid))
    sent: Counter[str] = Counter()
    per_school = [c for part in counts for c in part["schools"].values()]
    fleet = [c for part in counts for k, c in part["schools"].items() if k != POISON_SCHOOL]
    for c in fleet:
        sent.update(c["sent"])
    lost = expected - stored
    queued = sum(c["queued"] for c in per_school)
    return {
        "sent": sent,
        "valid": len(expected),
        "stored": len(stored & expected),
        "lost": len(lost),
        "lost_examples": sorted(lost)[:5],
        "queued_at_end": queued,
        "bandwidth_twice": int(rows) - int(distinct),
        "heartbeats_twice": int(beats[0] if beats else 0) - stored_beats,
        "rejects": rejects,
        "poisons": dict(s.poisons),
        "burst": len(s.burst_seqs),
        "seen": dict(s.seen),
        "faults": s.faults,
        "held": sum(c["held"] for c in per_school),
        "failed": sum(c["failed"] for c in per_school),
        "max_depth": max((c["max_depth"] for c in fleet), default=0),
        "generated_s": max(part["generated_seconds"] for part in counts[:-1]),
        "drained": all(part.get("drained") for part in counts),
        "drain_s": drain_s,
        "pg_version": harness.machine.postgres_version(pg_url),
        "cpu": s.cpu_by_part(),
    }


def _is_heartbeat(rid: str) -> bool:
    school, seq = rid[len("soak-") :].rsplit("-", 1)
    return school == POISON_SCHOOL or kind_of(int(seq)) == "heartbeat"


# --- the result --------------------------------------------------------------------------------


def results(f: dict[str, Any], args: argparse.Namespace, load: tuple[float, float]) -> str:
    verdict = harness.verdict
    sent: Counter[str] = f["sent"]
    invalid_sent = sum(n for what, n in f["poisons"].items() if what != "overflow burst")
    rejected = sum(f["rejects"].values())
    twice = f["bandwidth_twice"] + f["heartbeats_twice"]
    rate = (f["valid"] - f["burst"]) / f["generated_s"] if f["generated_s"] else 0.0
    faults = harness.table(
        ["at", "fault", "back in"],
        [[f"{h.at:,.0f} s", h.what, f"{h.back_in:.1f} s"] for h in f["faults"]],
    )
    rejects = ", ".join(f"`{k}` {v:,}" for k, v in sorted(f["rejects"].items())) or "none"
    poisons = ", ".join(f"{k} {v}" for k, v in f["poisons"].items()) or "none"
    seen = f["seen"]
    size = (
        f"{args.minutes:g} minute{'s' if args.minutes != 1 else ''} at {args.rate:,.0f} reports/s"
    )
    lines = [
        f"## Soak: {size} through the shipped broker, with restarts and poison",
        "",
        f"- Machine: {machine_note()}; {harness.shared_note(*load)}.",
        f"- Command: `{harness.command_line('soak')}`"
        + (f". Why this size: {args.why}" if args.why else ""),
        f"- Setup: Mosquitto running deploy/mosquitto/mosquitto.conf as shipped (TLS listener "
        f"with a password per school and the per-school ACL, persistence); `edugap serve` as a "
        f"process, a lone collector with its own persistent subscription, on a private "
        f"PostgreSQL {f['pg_version']} (its own data directory and port); {args.schools} "
        f"schools, each one TLS connection with its own credentials driven by the agent's own "
        f"Publisher and Drain (outbox in memory, no per-device rate limit), in "
        f"{args.publishers} publisher processes; 80 % heartbeats, 15 % speed tests, 5 % "
        "inventories, every report id unique.",
        f"- Schedule: a fault every {args.fault_every:g} s, in turn: {', '.join(FAULTS)}; a "
        f"poison message every {args.poison_every:g} s from a school of its own, in turn: "
        f"{', '.join(POISONS)} ({BURST:,} heartbeats of one hour at the largest counts the "
        "protocol allows: valid, so they must be stored).",
        "",
        harness.table(
            ["figure", "count"],
            [
                ["sent: valid reports the agents queued", f"{f['valid']:,}"],
                [
                    "of them heartbeats, speed tests, inventories (+ burst heartbeats)",
                    f"{sent['heartbeat']:,}, {sent['bandwidth']:,}, {sent['inventory']:,} "
                    f"(+ {f['burst']:,})",
                ],
                ["stored: distinct report ids in the store", f"{f['stored']:,}"],
                ["**lost**: sent and valid, not stored", f"**{f['lost']:,}**"],
                ["of the lost, still in an agent's queue at the end", f"{f['queued_at_end']:,}"],
                [
                    "stored twice: speed-test rows beyond one per id, heartbeats counted twice in "
                    "the hour sums",
                    f"{twice:,}",
                ],
                ["poison sent", poisons],
                ["rejected by the collector, by reason (rejects table)", rejects],
                [
                    "redeliveries the collector recognised as duplicates (at least: a killed "
                    "collector's counts since its last scrape are not seen)",
                    f"{seen.get('duplicate', 0):,}",
                ],
                ["agents' answers 'No matching subscribers' (held)", f"{f['held']:,}"],
                ["reports refused by the broker", f"{f['failed']:,}"],
                [
                    "longest queue of a school (not the poison school's burst)",
                    f"{f['max_depth']:,}",
                ],
            ],
        ),
        "",
        f"- Rate: {rate:,.0f} reports/s generated (asked: {args.rate:,.0f}) over "
        f"{f['generated_s']:,.0f} s; after the "
        f"last one the agents' queues and the store took {f['drain_s']:,.0f} s to settle "
        f"(every queue drained: {'yes' if f['drained'] else 'NO'}). CPU seconds used, of "
        f"{f['elapsed_s']:,.0f} s from the first report to the end (2 cores): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(f["cpu"].items(), key=lambda kv: -kv[1]))
        + ".",
        f"- 0 lost: {verdict(f['lost'] == 0)}. 0 stored twice: {verdict(twice == 0)}. Every "
        f"poison message rejected while the rest was stored: "
        f"{verdict(rejected >= invalid_sent and f['lost'] == 0)} ({rejected:,} rejects for "
        f"{invalid_sent:,} invalid messages sent; a message redelivered after a restart can be "
        "rejected twice).",
        "",
        faults,
    ]
    if f["lost"]:
        lines += ["", f"- First lost report ids: {', '.join(f['lost_examples'])}."]
    return "\n".join(lines) + "\n"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, help="how long reports are sent (30; quick 1)")
    parser.add_argument("--rate", type=float, help="reports a second, all schools (2,000; 1,000)")
    parser.add_argument("--schools", type=int, default=40, help="agent-like connections")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--fault-every", type=float, help="seconds (a twelfth of the run; 10)")
    parser.add_argument("--poison-every", type=float, help="seconds (60; quick 12)")
    parser.add_argument("--drain-seconds", type=float, default=600.0,
                        help="longest wait for the queues and the store at the end")  # fmt: skip
    parser.add_argument("--why", default="", help="a sentence for the result: why this size")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")


def main() -> int:
    quick = "1 minute at 1,000 reports/s, a fault every 10 s, poison every 12 s"
    args = harness.arguments("soak", __doc__, quick, options).parse_args()
    args.minutes = args.minutes or (1.0 if args.quick else 30.0)
    args.rate = args.rate or (1000.0 if args.quick else 2000.0)
    args.fault_every = args.fault_every or max(10.0, args.minutes * 60 / 12)
    args.poison_every = args.poison_every or (12.0 if args.quick else 60.0)
    work = args.keep or Path(tempfile.mkdtemp(prefix="edugap-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = harness.load_average()
    try:
        f = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    harness.write_result(results(f, args, (load_before, harness.load_average())), args.out)
    return 0 if f["lost"] == 0 else 1


if __name__ == "__main__":
    harness.main(main)
