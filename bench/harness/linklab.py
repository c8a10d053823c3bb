"""A school's link on this machine: linklab's three network namespaces, from a bench.

linklab (tests/linklab, see its README) makes `<name>_srv` (10.211.77.1), `<name>_rt` (the
shaped link: tbf per direction, a one-way delay and loss) and `<name>_cli` (10.211.77.2). A
bench brings one up per condition with `link(...)`, runs its server side and client side with
`netns(...)` argv, and reads what crossed the client's interface with `link_bytes(...)`.
Benches use names starting with `bench`, so they never touch a lab of the test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.realparts import missing

ROOT = Path(__file__).resolve().parents[2]
SERVER = "10.211.77.1"
CLIENT = "10.211.77.2"


def linklab_path() -> str:
    """`$EDUGAP_LINKLAB`, else the copy in the tree (tests/linklab/linklab)."""
    if given := os.environ.get("EDUGAP_LINKLAB"):
        return given
    return str(ROOT / "tests" / "linklab" / "linklab")


def require(*tools: tuple[str, str]) -> str:
    """Root, ip and tc, and `tools` ((command, Debian package)...); returns linklab's path."""
    if os.geteuid() != 0:
        missing("root", "linklab makes network namespaces: run this bench as root")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), *tools):
        if shutil.which(tool) is None:
            missing(tool, f"install the Debian package '{package}'")
    return linklab_path()


def netns(name: str, side: str, *argv: str) -> list[str]:
    """argv running `argv` in the lab's `side` namespace ("srv" or "cli")."""
    return ["ip", "netns", "exec", f"{name}_{side}", *argv]


@contextmanager
def link(
    linklab: str, name: str, down: float, up: float, rtt_ms: float = 0, loss: float = 0
) -> Iterator[None]:
    """The link up (Mbit/s each way, round-trip time, loss as a fraction); down on the way out."""
    subprocess.run(
        [linklab, "up", "--name", name, "--down", f"{down:g}", "--up", f"{up:g}",
         "--delay-ms", f"{rtt_ms / 2:g}", "--loss", f"{loss:g}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        subprocess.run([linklab, "down", "--name", name], check=False)


def in_ns(
    name: str, side: str, code: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -c code args...` (this interpreter, the repository importable) in a namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDUGAP_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        netns(name, side, sys.executable, "-c", code, *args),
        capture_output=True, text=True, timeout=timeout, check=False, env=env,
    )  # fmt: skip


WAIT_PORTS = """\
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
for port in map(int, sys.argv[3:]):
    while True:
        try:
            socket.create_connection((sys.argv[1], port), 2).close()
            break
        except OSError:
            if time.monotonic() > end:
                sys.exit(f"nothing listens on {sys.argv[1]}:{port}")
            time.sleep(0.2)
"""


def wait_ports(name: str, side: str, host: str, *ports: int, timeout: float = 60) -> str | None:
    """Wait until `host` accepts connections on every port, seen from `side`; the problem or
    None."""
    done = in_ns(name, side, WAIT_PORTS, host, str(timeout), *map(str, ports))
    return None if done.returncode == 0 else done.stderr.strip() or "no answer"


def link_bytes(name: str) -> tuple[int, int]:
    """(bytes, packets) received + sent by the client's side of the link so far (Ethernet
    headers included in the bytes)."""
    done = subprocess.run(
        ["ip", "-n", f"{name}_cli", "-s", "-j", "link", "show", f"{name}_c0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stats = json.loads(done.stdout)[0]["stats64"]
    return (
        int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"]),
        int(stats["rx"]["packets"]) + int(stats["tx"]["packets"]),
    )
