"""The self-hosted test across a real shaped, delayed link (linklab), as a school's link is.

linklab (`tests/linklab/linklab`, or `EDUGAP_LINKLAB`) joins three
network namespaces with tbf rate limits and a one-way delay. The collector's speed-test endpoint
runs in the server namespace under uvicorn, `edugap-agent speedtest` in the client namespace.
tbf limits IP packets; TCP's payload is 1448 of every 1514 bytes a full segment puts on the
link, so a shaped rate R lets at most R × 1448/1514 ≈ 0.956 R through as payload, which is
what the test's figures count. Root only (network namespaces, tc), as CI runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import realparts
from tests.agent.agentproc import AGENT, ROOT, clean_env, write_config

SERVER, PORT = "10.211.77.1", 8080
#: Payload share of a full-sized segment on the link (1448 of 1514 bytes with Ethernet).
PAYLOAD_SHARE = 1448 / 1514


def linklab_path() -> Path:
    # the copy in the tree (tests/linklab), unless EDUGAP_LINKLAB names another
    path = Path(os.environ.get("EDUGAP_LINKLAB") or ROOT / "tests" / "linklab" / "linklab")
    if os.geteuid() != 0:
        realparts.missing("linklab", "network namespaces and tc need root (CI runs as root)")
    if not path.is_file():
        realparts.missing("linklab", f"{path} not found: set EDUGAP_LINKLAB to linklab's path")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("cc", "gcc")):
        realparts.require_tool(tool, package)
    return path


class Link:
    """One linklab link: its name, and the client interface's byte counters."""

    def __init__(self, linklab: Path, name: str) -> None:
        self.linklab = linklab
        self.name = name

    def up(self, down: float, up: float, delay_ms: float) -> None:
        subprocess.run(
            [str(self.linklab), "up", "--name", self.name, "--down", f"{down:g}",
             "--up", f"{up:g}", "--delay-ms", f"{delay_ms:g}"],
            check=True, capture_output=True,
        )  # fmt: skip

    def down(self) -> None:
        subprocess.run([str(self.linklab), "down", "--name", self.name], capture_output=True)

    def netns(self, side: str) -> list[str]:
        return ["ip", "netns", "exec", f"{self.name}_{side}"]

    def client_bytes(self) -> int:
        """Bytes through the client's interface so far, both ways, as `ip -s link` counts."""
        out = subprocess.run(
            ["ip", "-n", f"{self.name}_cli", "-s", "-j", "link", "show", f"{self.name}_c0"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        stats = json.loads(out)[0]["stats64"]
        return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


@pytest.fixture
def link() -> Iterator[Link]:
    # unique, short (interface names are at most 15 characters), apart from benchmarks' names
    lab = Link(linklab_path(), f"t9{os.getpid() % 100000}")
    try:
        yield lab
    finally:
        lab.down()


def serve_endpoint(link: Link) -> subprocess.Popen[bytes]:
    """The collector's speed-test endpoint under uvicorn in the server namespace."""
    server = subprocess.Popen(
        [*link.netns("srv"), sys.executable, "-m", "uvicorn", "--factory",
         "edugap.collector.serving.speedtest:speedtest_app", "--host", SERVER,
         "--port", str(PORT), "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
        env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    probe = f"import socket; socket.create_connection(({SERVER!r}, {PORT}), timeout=1)"
    deadline = time.monotonic() + 20
    while subprocess.run([*link.netns("cli"), sys.executable, "-c", probe]).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            realparts.end_process(server)
            raise AssertionError("the speed-test endpoint did not start in the server namespace")
        time.sleep(0.2)
    return server


@pytest.mark.parametrize(
    ("down", "up", "delay_ms"),
    [
        (20, 20, 20),  # 40 ms RTT: where fixed-size files read low
        (2, 2, 20),  # a slow link with tbf's 100 ms queue: a figure, not an error
    ],
)
def test_speeds_read_the_shaped_link_and_bytes_match_the_interface(
    link: Link, tmp_path: Path, down: float, up: float, delay_ms: float
) -> None:
    link.up(down, up, delay_ms)
    server = serve_endpoint(link)
    config = write_config(
        tmp_path / "agent.toml",
        {"state_dir": str(tmp_path / "state")},
        {
            "school": {"school_id": "79000001"},
            "bandwidth": {"timeout_seconds": 40, "seconds": 6, "streams": 4},
        },
    )
    before = link.client_bytes()
    try:
        done = subprocess.run(
            [*link.netns("cli"), *AGENT, "speedtest", "--config", str(config),
             "--backend", "selfhosted", "--server-url", f"http://{SERVER}:{PORT}/", "--json"],
            capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120,
        )  # fmt: skip
    finally:
        realparts.end_process(server)
    on_the_link = link.client_bytes() - before
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout[done.stdout.index("\n{") :])

    allowed_down, allowed_up = down * PAYLOAD_SHARE, up * PAYLOAD_SHARE
    assert report["download_mbps"] == pytest.approx(allowed_down, rel=0.10), report
    assert report["upload_mbps"] == pytest.approx(allowed_up, rel=0.10), report
    assert report["latency_ms"] == pytest.approx(2 * delay_ms, abs=10)
    # what the link carried, counted by the client's interface (a few ARP frames aside)
    assert report["bytes_used"] == pytest.approx(on_the_link, rel=0.03)
    assert "4 streams each way, 6 s each way" in done.stderr

