"""Regional brokers: what one Mosquitto holds per school connection, and what one bridge carries.

Two measurements, each beside a baseline run on this machine in the same run:

1. Idle connections. The shipped Mosquitto config (deploy/mosquitto/mosquitto.conf) holds N
   idle school connections over TLS on the agents' listener (MQTT 3.1.1 CONNECT with a school's
   password, keep-alive 300 s, as national scale advises); baseline: the same number of plain
   connections on its private listener, on a fresh broker. Figures: the broker's RSS before and
   after, so the memory each connection costs, and how long connecting took.
2. A bridge's drain. M reports (heartbeat-sized JSON) wait in a regional broker's bridge queue
   while the link to the central broker is cut (the configs make_bridges.py writes, three
   brokers as tests/test_regional_brokers.py runs them); the link is restored and a collector's
   persistent session at the central broker receives them (`mosquitto_sub`, C). Baseline: the
   same M reports queued on one broker (the shipped config) for the same subscriber while it is
   away, then drained directly. Rates from the first message received to the last.

    .venv/bin/python bench/regional_brokers.py          # 10,000 connections, 3 x 50,000 reports
    .venv/bin/python bench/regional_brokers.py --quick  # 2,000 connections, 2 x 10,000 reports

Targets: one bridge drains at least the whole national load (10,500 reports/s with the
default schedule; a region carries a tenth of it), and a regional broker of 300,000
idle TLS connections (the largest region docs/scale.md plans) fits in 8 GiB of broker memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import harness
import paho.mqtt.client as mqtt
import psutil
from harness.parts import COLLECTOR_USER, ShippedBroker

from tests.test_regional_brokers import Brokers

KIB = 1024
NATIONAL_RATE = 10_500.0
REGION_CONNECTIONS = 300_000
REGION_MEMORY_GIB = 8.0
IDLE_HEADER = ["figure", "plain (baseline)", "TLS", "ratio / difference", "target"]
DRAIN_HEADER = ["figure", "one broker (baseline)", "through a bridge", "ratio"]


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, user: str, password: str, keepalive: int = 300) -> bytes:
    """An MQTT 3.1.1 CONNECT with username and password, clean session."""
    variable = _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", keepalive)
    payload = _utf8(client_id) + _utf8(user) + _utf8(password)
    body = variable + payload
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return b"\x10" + encoded + body


def hold_connections(
    port: int, n: int, user: str, password: str, tls: ssl.SSLContext | None
) -> tuple[list[socket.socket], float]:
    """Open n MQTT connections (each answered CONNACK 0); returns them and the seconds taken."""
    held: list[socket.socket] = []
    started = time.monotonic()
    for i in range(n):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        sock.sendall(connect_packet(f"idle-{i}", user, password))
        ack = sock.recv(4)
        if ack != b"\x20\x02\x00\x00":
            raise RuntimeError(f"connection {i} refused: {ack!r}")
        held.append(sock)
    return held, time.monotonic() - started


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def idle_side(workdir: Path, n: int, tls: bool) -> dict[str, float]:
    """One fresh shipped broker holding n idle connections: RSS before, after, seconds."""
    broker = ShippedBroker(workdir, schools=("HN-A",)).start()
    held: list[socket.socket] = []
    try:
        assert broker.proc is not None
        time.sleep(0.5)
        process = psutil.Process(broker.proc.pid)
        cpu_before = sum(process.cpu_times()[:2])
        before = rss(broker.proc.pid)
        if tls:
            context = ssl.create_default_context(cafile=str(broker.ca))
            held, seconds = hold_connections(
                broker.tls_port, n, "HN-A", broker.users["HN-A"], context
            )
        else:
            held, seconds = hold_connections(
                broker.plain_port, n, COLLECTOR_USER, broker.users[COLLECTOR_USER], None
            )
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        time.sleep(1.0)
        after = rss(broker.proc.pid)
        return {"before": before, "after": after, "seconds": seconds, "cpu": cpu}
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
        broker.stop()


def heartbeat_payload(i: int) -> bytes:
    """About the size of a real heartbeat report."""
    return json.dumps({
        "schema": "edugap.heartbeat/1", "report_id": f"{i:032x}", "school_id": "HN-A",
        "device_id": f"d{i % 50}", "measured_at": "2026-11-30T08:00:00Z",
        "agent_version": "1.0.0", "latency_ms": 12.5, "reachable": True, "queue_depth": 0,
        "dropped_reports": 0,
    }).encode()  # fmt: skip


def publish(port: int, user: str, password: str, ca: Path, m: int) -> None:
    """m QoS 1 reports over TLS as school HN-A, each acknowledged by the broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub",
                         protocol=mqtt.MQTTv311)  # fmt: skip
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [
        client.publish(f"edugap/v1/HN-A/d{i % 50}/heartbeat", heartbeat_payload(i), 1)
        for i in range(m)
    ]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def subscriber(port: int, user: str, password: str, m: int | None) -> list[str]:
    """mosquitto_sub as a collector's persistent session: with m, receive m and print times."""
    exe = shutil.which("mosquitto_sub")
    assert exe, "install the Debian package 'mosquitto-clients'"
    base = [exe, "-h", "127.0.0.1", "-p", str(port), "-u", user, "-P", password, "-q", "1",
            "-c", "-i", "bench-collector", "-t", "edugap/v1/+/+/+"]  # fmt: skip
    if m is None:  # create the session and its subscription, then leave
        subprocess.run([*base, "-E"], check=True, timeout=30)
        return []
    done = subprocess.run([*base, "-C", str(m), "-F", "%U"], check=True, timeout=600,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.split()


def drain_rate(stamps: list[str], m: int) -> float:
    assert len(stamps) == m, f"received {len(stamps)} of {m}"
    first, last = float(stamps[0]), float(stamps[-1])
    return (m - 1) / max(last - first, 1e-6)


def bridge_side(workdir: Path, m: int) -> tuple[float, float]:
    """M reports queued behind a cut bridge, then drained into the central subscriber: the
    drain rate, and the regional broker's memory per queued report (bytes)."""
    brokers = Brokers(workdir).start()
    try:
        central = brokers.central.settings(COLLECTOR_USER)
        subscriber(central.port, central.username or "", central.password or "", None)
        brokers.link.cut()
        region = brokers.regions["bac"]
        assert region.proc is not None
        before = rss(region.proc.pid)
        publish(region.tls_port, "HN-A", region.users["HN-A"], region.ca, m)
        queued = (rss(region.proc.pid) - before) / m
        brokers.link.restore()
        stamps = subscriber(central.port, central.username or "", central.password or "", m)
        return drain_rate(stamps, m), queued
    finally:
        brokers.stop()


def direct_side(workdir: Path, m: int) -> float:
    """The same M reports queued on one broker for the away subscriber, drained directly."""
    broker = ShippedBroker(workdir, schools=("HN-A",)).start()
    try:
        pw = broker.users[COLLECTOR_USER]
        subscriber(broker.plain_port, COLLECTOR_USER, pw, None)
        publish(broker.tls_port, "HN-A", broker.users["HN-A"], broker.ca, m)
        stamps = subscriber(broker.plain_port, COLLECTOR_USER, pw, m)
        return drain_rate(stamps, m)
    finally:
        broker.stop()


def main() -> int:
    args = harness.arguments(
        "regional_brokers", __doc__, "2,000 connections, 2 x 10,000 reports"
    ).parse_args()
    n, m, rounds = (2_000, 10_000, 2) if args.quick else (10_000, 50_000, 3)
    load_before = harness.load_average()
    with tempfile.TemporaryDirectory(prefix="edugap-regional-") as tmp:
        work = Path(tmp)
        plain = idle_side(work / "plain", n, tls=False)
        tls = idle_side(work / "tls", n, tls=True)
        sides: dict[str, list[float]] = {"direct": [], "bridge": [], "queued": []}
        for r in range(rounds):  # interleaved, so the machine's other load slows both alike
            for side in harness.rotated(["direct", "bridge"], r):
                if side == "direct":
                    sides["direct"].append(direct_side(work / f"direct{r}", m))
                else:
                    rate, queued = bridge_side(work / f"bridge{r}", m)
                    sides["bridge"].append(rate)
                    sides["queued"].append(queued)
        direct, bridged = harness.median(sides["direct"]), harness.median(sides["bridge"])
        queued_bytes = harness.median(sides["queued"])
    load_after = harness.load_average()

    def per_conn(side: dict[str, float]) -> float:
        return (side["after"] - side["before"]) / n / KIB

    tls_extra = per_conn(tls) - per_conn(plain)
    region_gib = (tls["before"] + per_conn(tls) * KIB * REGION_CONNECTIONS) / 2**30
    needed = NATIONAL_RATE
    rows = [
        [f"{n:,} idle connections: broker RSS before / after", f"{plain['before'] / 2**20:.1f} / "
         f"{plain['after'] / 2**20:.1f} MiB", f"{tls['before'] / 2**20:.1f} / "
         f"{tls['after'] / 2**20:.1f} MiB", "", ""],
        ["broker memory per idle connection", f"{per_conn(plain):.1f} KiB",
         f"{per_conn(tls):.1f} KiB", f"TLS costs {tls_extra:.1f} KiB more", ""],
        [f"{REGION_CONNECTIONS:,} TLS connections at that rate", "", f"{region_gib:.1f} GiB", "",
         f"<= {REGION_MEMORY_GIB:.0f} GiB: {harness.verdict(region_gib <= REGION_MEMORY_GIB)}"],
        [f"time to open {n:,} connections (one Python client)", f"{plain['seconds']:.1f} s",
         f"{tls['seconds']:.1f} s", "", ""],
        ["broker CPU per connection (handshake, CONNECT, password check)",
         f"{plain['cpu'] / n * 1000:.2f} ms", f"{tls['cpu'] / n * 1000:.2f} ms", "", ""],
    ]  # fmt: skip
    drain = [
        [f"{m:,} reports drained to a collector's session (median of {rounds} runs; each: "
         + ", ".join(f"{d:,.0f} / {b:,.0f}" for d, b in zip(sides["direct"], sides["bridge"],
                                                              strict=True)) + ")",
         f"{direct:,.0f} reports/s",
         f"{bridged:,.0f} reports/s", f"{bridged / direct:.2f}x",
         f">= {needed:,.0f}/s: {harness.verdict(bridged >= needed)}"],
        ["regional broker memory per report in the bridge queue", "",
         f"{queued_bytes:,.0f} bytes", "", ""],
    ]  # fmt: skip
    text = "\n".join([
        "## Regional brokers: connections per broker, a bridge's drain",
        "",
        f"- Machine: {harness.machine_line()}",
        f"- Command: `{harness.command_line('regional_brokers')}`; "
        f"{harness.shared_note(load_before, load_after)}",
        "- Idle connections: MQTT 3.1.1 CONNECTs held open by one Python process, keep-alive "
        "300 s, on a fresh broker per side running deploy/mosquitto/mosquitto.conf; plain on the "
        "private listener (baseline), TLS 1.2+ with a school's password on the agents' listener.",
        "- Drain: heartbeat-sized reports (about 250 bytes of JSON) queued QoS 1; baseline: one "
        "broker (the shipped config) holding them for an away `mosquitto_sub -c` session; "
        "bridge: a regional broker (make_bridges.py's config) holding them behind a cut link, "
        "then the TLS bridge to the central broker and the same session there. Rates from the "
        "first report received to the last.",
        "",
        harness.table(IDLE_HEADER, rows),
        "",
        harness.table([*DRAIN_HEADER, "target: one bridge carries the national load"], drain),
    ])
    harness.write_result(text, args.out)
    return 0


if __name__ == "__main__":
    harness.main(main)
