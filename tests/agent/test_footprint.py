"""What keeps the agent small: probes load on first use, and speed-test uploads hold no bodies."""

from __future__ import annotations

import subprocess
import sys

import pytest
import speedtest

from edugap.agent.probes import PROBES, probe_class
from edugap.agent.probes.speedtest_client import UPLOAD_SIZES, UploadBody
from tests.agent.agentproc import ROOT, clean_env

# What `edugap-agent run` imports with the bandwidth role off: the command, the service and
# the probes it runs on schedule.
_STEADY_IMPORTS = """
import sys
import edugap.agent.cli, edugap.agent.service
from edugap.agent.probes import AvailabilityProbe, Identity, InventoryProbe, TrafficProbe
print(" ".join(sorted(sys.modules)))
"""


def test_an_agent_without_the_bandwidth_role_never_loads_speedtest_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _STEADY_IMPORTS],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        check=True,
    )
    loaded = set(done.stdout.split())
    assert "edugap.agent.probes.inventory" in loaded  # the probes it asked for are there
    heavy = {"speedtest", "edugap.agent.probes.speedtest_client", "edugap.agent.probes.bandwidth"}
    assert not heavy & loaded


def test_every_registered_probe_loads_by_name() -> None:
    for name in PROBES:
        assert probe_class(name).name == name  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="known: availability, bandwidth"):
        probe_class("nope")


@pytest.mark.parametrize("length", [*UPLOAD_SIZES, 7_340_032, 9, 45, 100_003])
def test_upload_body_is_the_bytes_speedtest_cli_would_send(length: int) -> None:
    reference = speedtest.HTTPUploaderData(length, 0, 10)
    reference.pre_allocate()
    body = UploadBody(length)
    # http.client reads request bodies in 8 KiB blocks; speedtest-cli asks for 10 KiB
    chunks = [bytes(c) for c in iter(lambda: body.read(8192), b"")]
    assert b"".join(chunks) == reference.data.getvalue()[:length]
    assert body.read(8192) == b""
