"""1,100 half-open HTTP connections against a real `edugap serve` limited to 1,024 descriptors
(the default where nothing raises it), a real Mosquitto restarted meanwhile, a real store.

Before the guard, the crowd used up the descriptors: /readyz, /metrics and the API stopped
answering and ingest could not reconnect to the broker. Now health stays answerable, ingest
reconnects and stores every report sent, and the server closes the crowd's connections.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edugap.collector.serving.httpguard import connection_limit
from edugap.protocol.messages import utcnow
from tests import realparts
from tests.collector.http_helpers import closed_by_server, wait_ready
from tests.collector.mqtt_helpers import publish, publisher, wait_until
from tests.collector.reports import heartbeat

CROWD = 1100
NOFILE = 1024
HALF_HEAD = b"GET /readyz HTTP/1.1\r\nHost: crowd\r\n"  # the blank line never comes


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture
def collector(
    broker: realparts.Mosquitto, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = realparts.free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "EDUGAP_SNAPSHOT_INTERVAL_SECONDS": "0.5",
        "EDUGAP_HTTP_HEADER_TIMEOUT_SECONDS": "3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edugap.collector.cli", "serve", "--broker", broker.url,
         "--db", str(tmp_path / "edugap.db"), "--listen", f"127.0.0.1:{port}",
         "--client-id", "crowd-collector"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_limit_descriptors,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def collector_metrics(base: str) -> dict[tuple[str, str], float]:
    body = httpx.get(f"{base}/metrics", params={"collector": "1"}, timeout=30).text
    return {
        (s.name, s.labels.get("result", s.labels.get("reason", ""))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def reap(crowd: list[socket.socket]) -> int:
    """Close (on our side) the sockets the server has closed; returns how many.

    paho's loop uses select(), which cannot watch a descriptor above 1023: the test's own
    publisher needs the crowd's spent descriptors back."""
    spent = 0
    for sock in list(crowd):
        try:
            alive = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            alive = True
        except ConnectionResetError:
            alive = False
        if not alive:
            crowd.remove(sock)
            sock.close()
            spent += 1
    return spent


def test_a_crowd_of_half_open_connections_stops_nothing(
    collector: tuple[str, subprocess.Popen[str]], broker: realparts.Mosquitto
) -> None:
    base, proc = collector
    port = int(base.rsplit(":", 1)[1])
    crowd: list[socket.socket] = []
    spent = 0
    try:
        for _ in range(CROWD):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            crowd.append(sock)
            with contextlib.suppress(OSError):  # already made room for a later one
                sock.sendall(HALF_HEAD)
        # the crowd holds every connection it can; health, metrics and the API still answer
        for _ in range(5):
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/v1/provinces", timeout=10).status_code == 200

        # the broker restarts while the crowd is there: ingest needs a descriptor to reconnect
        broker.stop()
        broker.start()
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200,
            timeout=60,
            what="ingest reconnected to the restarted broker",
        )
        spent += reap(crowd)
        sent = [heartbeat(device=f"d{i}", at=utcnow() - timedelta(minutes=i)) for i in range(50)]
        with publisher(broker.url) as pub:
            publish(pub, sent)
        wait_until(
            lambda: (
                collector_metrics(base).get(("edugap_collector_messages_total", "stored"))
                == len(sent)
            ),
            timeout=60,
            what=f"{len(sent)} reports stored",
        )

        # every connection of the crowd is closed by the server
        assert spent + sum(closed_by_server(sock) for sock in crowd) == CROWD
    finally:
        for sock in crowd:
            sock.close()
    found = collector_metrics(base)
    closed = {r: found.get(("edugap_collector_http_closed_total", r), 0.0)
              for r in ("header_timeout", "evicted", "refused")}  # fmt: skip
    assert closed["header_timeout"] + closed["evicted"] >= CROWD
    assert closed["refused"] == 0  # nobody was busy: room was always made, never refused
    assert found[("edugap_collector_http_connection_limit", "")] == connection_limit(1000, NOFILE)
    assert found[("edugap_collector_messages_total", "stored")] == len(sent)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as junk:
        junk.sendall(b"\x1b[2J\x1b]0;owned\x07 / HTTP/1.1\r\n\r\n")  # not HTTP at all
        assert junk.recv(100).startswith(b"HTTP/1.1 400")
    proc.terminate()
    output = proc.communicate(timeout=60)[0]
    # uvicorn's own lines go through the collector's log format (controls escaped)
    assert "WARNING uvicorn.error: Invalid HTTP request received." in output
    assert "\x1b" not in output
    assert "Too many open files" not in output and "out of system resource" not in output
    assert "lowered to" in output  # the operator is told why the limit is below the setting
