"""Benchmark: the agent's own network traffic per day at the default settings, measured.

Two agents run side by side for the same wall time, each on a link of its own (linklab, names
`benchtra` and `benchtrb`, 1000 Mbit/s, no delay: only the counters matter): the agent in the
client namespace, and in the server namespace Mosquitto running the shipped deploy/mosquitto
config (TLS on the agents' listener, per-school password, ACL) with `edugap serve` subscribed
on its private listener, as a school's agent and its collector are. What crosses the client's
interface is the agent's traffic and nothing else. Each runs `edugap-agent run` at the default
schedule:

- A, the defaults: availability checks go to the broker's host:port (the default target);
- B, the same with the availability target on a blackholed route, so its checks put nothing
  on the wire: B is the MQTT traffic alone.

The counters are sampled every 0.25 s beside the agent's outbox counter of acknowledged
reports, which dates each report: in B, the bytes from the start until the first report is
acknowledged are the connection (TCP, TLS handshake, MQTT CONNECT) and the first inventory;
the bytes around each later acknowledgement are one heartbeat; the rest, per minute, is the
keep-alive. In A, one availability round is also measured alone before the agent starts
(20 rounds of the probe's own check against the broker); A minus B over the run is the
cross-check. The day is projected from these costs and the default schedule. Bytes are IP
bytes (the 14-byte Ethernet header per packet taken off the interface's count; a real
Ethernet link adds 18 to 38 bytes per packet on top).

    .venv/bin/python bench/agent_traffic.py            # 16 minutes (3 heartbeats)
    .venv/bin/python bench/agent_traffic.py --quick    # 6 minutes (1 heartbeat)

Root only (network namespaces). Writes bench/results/agent_traffic.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import linklab
from harness.linklab import CLIENT, SERVER, netns
from harness.procs import Child, agent_argv, edugap_argv, env_for_child, free_port

from edugap.agent.config import AgentConfig
from tests.agent.agentproc import write_config
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker

NAME = "agent_traffic"
SCHOOL = "HN-A"
BLACKHOLE = "10.255.255.0/24"
LINK_HEADER = 14  # the Ethernet header, counted in the interface's bytes
PROBE_ROUNDS = 20
QUIET_SECONDS = 10.0
DEFAULTS = AgentConfig()
PROBE = """\
import sys, time
from edugap.agent.probes import AvailabilityProbe
probe = AvailabilityProbe([sys.argv[1]], timeout_s=float(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    assert probe.check(), "the broker did not answer"
    time.sleep(0.1)
"""
READY = """\
import sys, time, urllib.request
end = time.monotonic() + 60
while True:
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > end:
        sys.exit("the collector did not get ready")
    time.sleep(0.3)
"""


def ip_bytes(name: str) -> int:
    nbytes, packets = linklab.link_bytes(name)
    return nbytes - LINK_HEADER * packets


def acked(state: Path) -> int:
    """The agent's count of reports the broker acknowledged (its outbox's counter)."""
    try:
        conn = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'acked_total'").fetchone()
        finally:
            conn.close()
        return int(row[0] or 0) if row else 0
    except sqlite3.Error:
        return 0


def server_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for the lab's server address."""
    where.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=edugap bench CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={SERVER}",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (where / "ext.cnf").write_text(f"subjectAltName=IP:{SERVER}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"


def mac(name: str, side: str, device: str) -> str:
    done = subprocess.run(["ip", "-n", f"{name}_{side}", "-j", "link", "show", device],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return str(json.loads(done.stdout)[0]["address"])


def quiet(name: str) -> None:
    """Nothing on the link but the agent's own packets: no IPv6 (router solicitations,
    multicast reports) and no ARP (permanent neighbour entries both ways)."""
    for side in ("cli", "rt", "srv"):
        subprocess.run(netns(name, side, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                             "net.ipv6.conf.default.disable_ipv6=1"), check=True)  # fmt: skip
    for side, peer, device, address in (("cli", "srv", "s0", SERVER), ("srv", "cli", "c0", CLIENT)):
        own = f"{name}_{'c0' if side == 'cli' else 's0'}"
        subprocess.run(["ip", "-n", f"{name}_{side}", "neigh", "replace", address, "lladdr",
                        mac(name, peer, f"{name}_{device}"), "dev", own, "nud", "permanent"],
                       check=True)  # fmt: skip


@dataclass
class Side:
    """One agent on its own link, with its broker and collector."""

    name: str
    work: Path
    blackholed: bool
    state: Path
    agent: Child
    probe_round: float | None = None
    samples: list[tuple[float, int, int]] = field(default_factory=list)


@contextmanager
def side(lab: str, name: str, work: Path, blackholed: bool) -> Iterator[Side]:
    """The link up, the shipped broker and a collector in its server namespace, the agent
    (not yet started) configured in its client namespace."""
    work.mkdir(parents=True)
    broker = ShippedBroker(work / "broker", schools=(SCHOOL,))  # writes config, passwords
    ca, cert, key = server_certificates(work / "certs")
    conf = broker.conf.read_text()
    for old, new in {
        f"listener {broker.tls_port} 127.0.0.1": f"listener {broker.tls_port} {SERVER}",
        str(broker.ca.parent / "server.crt"): str(cert),
        str(broker.ca.parent / "server.key"): str(key),
    }.items():
        assert old in conf, f"{old} not in the broker's config"
        conf = conf.replace(old, new)
    broker.conf.write_text(conf)
    collector_password = broker.users[COLLECTOR_USER]
    http_port = free_port()
    with ExitStack() as stack:
        stack.enter_context(linklab.link(lab, name, 1000, 1000))
        quiet(name)
        children = [
            Child("mosquitto", netns(name, "srv", broker.exe, "-c", str(broker.conf)),
                  work / "mosquitto.out"),
            Child("collector", netns(name, "srv", *edugap_argv("serve", "--broker",
                  f"mqtt://{COLLECTOR_USER}:{collector_password}@127.0.0.1:{broker.plain_port}",
                  "--db", str(work / "edugap.db"), "--listen", f"127.0.0.1:{http_port}")),
                  work / "collector.log", env=env_for_child()),
        ]  # fmt: skip
        for child in children:
            stack.callback(child.stop)
            child.start()
            if child.name == "mosquitto":
                problem = linklab.wait_ports(name, "cli", SERVER, broker.tls_port)
                if problem:
                    raise RuntimeError(f"{problem}: {broker.log.read_text()[-1000:]}")
        ready = linklab.in_ns(name, "srv", READY, f"http://127.0.0.1:{http_port}/readyz")
        if ready.returncode != 0:
            raise RuntimeError(f"{ready.stderr.strip()}: {children[1].log_tail()}")
        if blackholed:
            subprocess.run(["ip", "-n", f"{name}_cli", "route", "add", "blackhole", BLACKHOLE],
                           check=True)  # fmt: skip
        state = work / "state"
        availability = {"targets": [BLACKHOLE.replace("0/24", "1:53")]} if blackholed else {}
        config = write_config(
            work / "agent.toml",
            {"state_dir": str(state)},
            {
                "school": {"school_id": SCHOOL},
                "broker": {
                    "url": f"mqtts://{SERVER}:{broker.tls_port}",
                    "password": broker.users[SCHOOL],
                    "ca_file": str(ca),
                },
                "availability": availability,
            },
        )
        agent = Child("agent", netns(name, "cli", *agent_argv("run", "--config", str(config))),
                      work / "agent.log", env=env_for_child())  # fmt: skip
        stack.callback(agent.stop)
        this = Side(name, work, blackholed, state, agent)
        if not blackholed:
            target = f"{SERVER}:{broker.tls_port}"
            before = ip_bytes(name)
            timeout = str(DEFAULTS.availability.timeout_seconds)
            done = linklab.in_ns(name, "cli", PROBE, target, timeout, str(PROBE_ROUNDS))
            if done.returncode != 0:
                raise RuntimeError(f"availability rounds failed: {done.stderr.strip()}")
            time.sleep(1.0)  # the last closes' ACKs
            this.probe_round = (ip_bytes(name) - before) / PROBE_ROUNDS
        yield this


# --- the analysis ----------------------------------------------------------------------------


@dataclass
class Mqtt:
    start: int  # connection and first inventory
    heartbeats: list[int]
    keepalive_per_min: float
    total: int
    seconds: float


def bytes_at(samples: list[tuple[float, int, int]], t: float) -> float:
    """The counter at time t (the last sample at or before it)."""
    value = samples[0][1]
    for when, nbytes, _ in samples:
        if when > t:
            break
        value = nbytes
    return value


def mqtt_costs(samples: list[tuple[float, int, int]]) -> Mqtt:
    changes = [
        s[0] for prev, s in itertools.pairwise(samples) if s[2] > prev[2]
    ]  # times a report was acknowledged
    if not changes:
        raise RuntimeError("the agent never had a report acknowledged")
    first_end = changes[0] + 2.0
    start = bytes_at(samples, first_end)
    windows = [(t - 1.5, t + 1.0) for t in changes[1:]]
    heartbeats = [int(bytes_at(samples, b) - bytes_at(samples, a)) for a, b in windows]
    total, seconds = samples[-1][1], samples[-1][0]
    rest = total - start - sum(heartbeats)
    rest_minutes = (seconds - first_end - sum(b - a for a, b in windows)) / 60
    return Mqtt(int(start), heartbeats, rest / rest_minutes, int(total), seconds)


def render(a: Side, b: Side, load: tuple[float, float], minutes: float, noise: int) -> str:
    mqtt = mqtt_costs(b.samples)
    probe = float(a.probe_round or 0)
    sched = DEFAULTS.schedule
    heartbeat = statistics.median(mqtt.heartbeats) if mqtt.heartbeats else float("nan")
    inventories = 24 / sched.inventory_hours
    day = {
        "heartbeats": 24 * 60 / sched.heartbeat_minutes * heartbeat,
        "inventory": inventories * mqtt.start,
        "keepalive": 24 * 60 * mqtt.keepalive_per_min,
        "probes": 24 * 60 / sched.availability_minutes * probe,
    }
    mqtt_day = day["heartbeats"] + day["inventory"] + day["keepalive"]
    total_day = mqtt_day + day["probes"]
    a_total, b_total = a.samples[-1][1], b.samples[-1][1]
    rounds = int(minutes / sched.availability_minutes)  # the first is a minute in
    rows = [
        ("availability check (one TCP connect and close to the broker)", f"{probe:,.0f} B",
         f"{24 * 60 / sched.availability_minutes:,.0f}", f"{day['probes'] / 1e6:.2f} MB"),
        ("heartbeat (publish, PUBACK, TCP ACKs, TLS records)", f"{heartbeat:,.0f} B",
         f"{24 * 60 / sched.heartbeat_minutes:,.0f}", f"{day['heartbeats'] / 1e6:.2f} MB"),
        ("connection and inventory (TCP, TLS handshake, CONNECT, inventory report), counted "
         "for every inventory: an upper bound", f"{mqtt.start:,.0f} B", f"{inventories:g}",
         f"{day['inventory'] / 1e6:.2f} MB"),
        ("keep-alive and anything else, per minute", f"{mqtt.keepalive_per_min:,.0f} B",
         "1,440", f"{day['keepalive'] / 1e6:.2f} MB"),
        ("**MQTT**", "", "", f"**{mqtt_day / 1e6:.2f} MB**"),
        ("**all, without speed tests**", "", "", f"**{total_day / 1e6:.2f} MB**"),
    ]  # fmt: skip
    table = harness.table(("what", "bytes each", "per day", "per day"), rows)
    before = 2 * 24 * 60 / sched.availability_minutes * probe
    return f"""## Agent traffic: a day at the default settings

What: `edugap-agent run` at the default schedule (inventory every {sched.inventory_hours:g} h,
heartbeat every {sched.heartbeat_minutes:g} min, availability check every
{sched.availability_minutes:g} min, MQTT keep-alive {DEFAULTS.broker.keepalive} s, no speed-test
role) against Mosquitto running the shipped config over TLS, with `edugap serve` subscribed,
each agent alone on a link of its own (linklab's namespaces; the client interface's counters);
two agents side by side for {minutes:g} minutes, one with the default availability target (the
broker) and one whose checks put nothing on the wire. IP bytes (a real Ethernet link adds 18
to 38 bytes per packet).

Machine: {harness.machine_line(*harness.versions(mosquitto=True))};
{harness.shared_note(*load)} (traffic does not depend on load).

Command: `{harness.command_line(NAME)}`.

{table}

Before the agents started, the two links carried {noise} B in {QUIET_SECONDS:g} s (nothing
else crosses them). Measured over the run: the agent with checks {a_total:,} B, the agent
without {b_total:,} B; the difference, {a_total - b_total:,} B, is {rounds} rounds at
{(a_total - b_total) / max(rounds, 1):,.0f} B (the cross-check of the {probe:,.0f} B measured
alone); {len(mqtt.heartbeats)} heartbeat(s) seen ({", ".join(f"{h:,}" for h in mqtt.heartbeats)} B).

Before: the checks went to two third-party DNS servers (8.8.8.8:53 and 1.1.1.1:53) every
minute: {before / 1e6:.2f} MB a day at the same cost per connect, twice the one target's.
Speed tests come on top, on the one designated computer of a school, within
`bandwidth.daily_budget_mb` (see the speed-test accuracy bench for a test's bytes).
"""


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, help="how long (default 16, quick 6)")
    parser.add_argument(
        "--samples", type=Path, help="also write every sample (seconds, IP bytes, acked) as JSON"
    )


def main() -> int:
    parser = harness.arguments(NAME, __doc__, "6 minutes (one heartbeat)", options)
    args = parser.parse_args()
    lab = linklab.require(("openssl", "openssl"))
    minutes = args.minutes or (6.0 if args.quick else 16.0)
    load_before = harness.load_average()
    with tempfile.TemporaryDirectory(prefix="edugap-traffic-") as tmp, ExitStack() as stack:
        a = stack.enter_context(side(lab, "benchtra", Path(tmp) / "A", blackholed=False))
        b = stack.enter_context(side(lab, "benchtrb", Path(tmp) / "B", blackholed=True))
        sides = (a, b)
        zero = {s.name: ip_bytes(s.name) for s in sides}
        time.sleep(QUIET_SECONDS)
        noise = sum(ip_bytes(s.name) - zero[s.name] for s in sides)
        zero = {s.name: ip_bytes(s.name) for s in sides}
        start = time.monotonic()
        for s in sides:
            s.agent.start()
        while True:
            now = time.monotonic() - start
            for s in sides:
                s.samples.append((now, ip_bytes(s.name) - zero[s.name], acked(s.state)))
                if not s.agent.running():
                    raise RuntimeError(f"the agent of {s.name} stopped: {s.agent.log_tail()}")
            if now >= minutes * 60:
                break
            time.sleep(0.25)
        if args.samples:
            args.samples.write_text(json.dumps({s.name: s.samples for s in sides}))
        text = render(a, b, (load_before, harness.load_average()), minutes, noise)
    harness.write_result(text, args.out)
    return 0


if __name__ == "__main__":
    harness.main(main)
