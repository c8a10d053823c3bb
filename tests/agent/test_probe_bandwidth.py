"""Bandwidth probe: the agent's timed-stream test (and speedtest-cli's fallback) against the
real self-hosted endpoint."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from edugap.agent.probes import BandwidthProbe, Identity, TrafficProbe
from edugap.agent.probes.speedtest_client import SelfhostedPlan
from edugap.agent.probes.streams import StreamPlan
from edugap.collector.serving.speedtest import TokenBucket
from edugap.protocol import messages as protocol
from tests import realparts
from tests.agent.conftest import StartServer

ME = Identity(school_id="79-001", device_id="dev-1", agent_version="0.1.0")
CLOCK = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
STREAMS = StreamPlan(seconds=1.5, streams=2)
# speedtest-cli's fixed files, for endpoints without timed streams. Small enough that a
# localhost test finishes by size, not by time.
PLAN = SelfhostedPlan(
    download_sides=(350, 500, 750),
    download_repeats=2,
    upload_sizes=(262_144,),
    upload_repeats=4,
    seconds=8.0,
)


def paced(mbps: float = 100.0) -> dict[str, object]:
    """Endpoint options that hold it to `mbps` each way (a loopback test would use a core)."""
    return {"download_pacer": TokenBucket(mbps), "upload_pacer": TokenBucket(mbps)}


def probe(url: str, **kwargs: object) -> BandwidthProbe:
    options: dict[str, object] = {
        "timeout_s": 25.0,
        "plan": PLAN,
        "streams": STREAMS,
        "clock": lambda: CLOCK,
    }
    options.update(kwargs)
    return BandwidthProbe(backend="selfhosted", server_url=url, **options)  # type: ignore[arg-type]


def assert_valid_on_the_wire(report: protocol.Bandwidth) -> None:
    topic = protocol.topic_for(ME.school_id, ME.device_id, "bandwidth")
    assert protocol.decode(topic, protocol.encode(report)) == report


class FailAfter:
    """A pacer that breaks the endpoint once it has moved `nbytes`."""

    def __init__(self, nbytes: int) -> None:
        self.left = nbytes

    async def take(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise RuntimeError("injected failure mid-test")


def test_selfhosted_test_measures_and_counts_bytes_like_the_server(
    speedtest_server: StartServer,
) -> None:
    url, app = speedtest_server(**paced())
    stages: list[str] = []
    bandwidth = probe(url, traffic=TrafficProbe())

    report = bandwidth.collect(ME, progress=lambda stage, fraction: stages.append(stage))

    assert report.error is None, report.error
    assert report.download_mbps and report.download_mbps > 0
    assert report.upload_mbps and report.upload_mbps > 0
    assert report.latency_ms is not None and report.latency_ms >= 0
    assert report.backend == "selfhosted" and report.server == url
    assert not report.partial and report.note is None
    # timed streams, one request per connection each way
    assert (app.downloads, app.uploads) == (STREAMS.streams, STREAMS.streams)
    # every payload byte the server moved, plus the headers of the segments that carried them
    server_bytes = app.bytes_served + app.bytes_received
    assert server_bytes < report.bytes_used <= 1.10 * server_bytes
    assert report.link_rx_mbps is not None and report.link_tx_mbps is not None
    assert stages[0] == "latency" and stages[-1] == "done"
    assert {"download", "upload"} <= set(stages)
    assert report.measured_at == CLOCK
    assert_valid_on_the_wire(report)


def test_endpoint_without_timed_streams_gets_speedtest_clis_fixed_files(
    speedtest_server: StartServer,
) -> None:
    # an older collector, or nginx serving the files statically
    url, app = speedtest_server(timed_streams=False)
    report = probe(url).collect(ME)
    assert report.error is None, report.error
    assert report.download_mbps and report.upload_mbps
    assert app.bytes_served == PLAN.max_download_bytes()
    assert app.bytes_received == PLAN.max_upload_bytes()
    server_bytes = app.bytes_served + app.bytes_received
    assert server_bytes < report.bytes_used <= 1.10 * server_bytes


def test_a_test_stops_early_within_the_daily_budget_and_says_so(
    speedtest_server: StartServer,
) -> None:
    url, app = speedtest_server(**paced(20.0))  # 2.5 MB/s: a 1.5 s phase would move 3.75 MB
    budget = 2_000_000

    report = probe(url, upload=False).collect(ME, budget_bytes=budget)

    assert report.error is None, report.error
    assert report.partial and report.note and "daily data budget" in report.note
    assert report.download_mbps and report.download_mbps > 0
    assert app.bytes_served < budget and report.bytes_used <= budget
    assert_valid_on_the_wire(report)


def test_a_budget_too_small_for_a_phase_skips_the_test(speedtest_server: StartServer) -> None:
    url, _ = speedtest_server(**paced(20.0))
    bandwidth = probe(url, upload=False)
    assert bandwidth.collect(ME).error is None  # now the agent knows the link's rate

    report = bandwidth.collect(ME, budget_bytes=500_000)

    assert report.skipped and report.error and "daily data budget" in report.error
    assert report.download_mbps is None and report.bytes_used < 50_000


def test_download_only_when_upload_is_off(speedtest_server: StartServer) -> None:
    url, app = speedtest_server()
    report = probe(url, upload=False).collect(ME)
    assert report.error is None and report.download_mbps
    assert report.upload_mbps is None
    assert app.bytes_received == 0


def test_endpoint_mounted_under_a_prefix(speedtest_server: StartServer) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from edugap.collector.serving.speedtest import serve_in_thread, speedtest_app

    endpoint = speedtest_app(**paced())  # type: ignore[arg-type]
    with serve_in_thread(Starlette(routes=[Mount("/speedtest", app=endpoint)])) as base:
        report = probe(base + "/speedtest").collect(ME)
    assert report.error is None, report.error
    assert endpoint.downloads == STREAMS.streams and endpoint.bytes_served > 0


def test_download_cut_off_mid_test_is_an_error_without_speeds(
    speedtest_server: StartServer,
) -> None:
    url, _ = speedtest_server(download_pacer=FailAfter(500_000))
    report = probe(url).collect(ME)
    assert report.error is not None and report.error.startswith("download failed")
    assert report.download_mbps is None and report.upload_mbps is None
    assert report.bytes_used > 0  # the bytes it did move still count against the budget
    assert not report.succeeded
    assert_valid_on_the_wire(report)


def test_upload_server_error_mid_test_is_an_error_without_speeds(
    speedtest_server: StartServer,
) -> None:
    url, _ = speedtest_server(upload_pacer=FailAfter(300_000), download_pacer=TokenBucket(100))
    report = probe(url).collect(ME)
    assert report.error is not None and report.error.startswith("upload failed")
    assert report.download_mbps is None and report.upload_mbps is None


def test_server_down_is_an_error(free_port: int) -> None:
    report = probe(f"http://127.0.0.1:{free_port}/speedtest").collect(ME)
    assert report.error is not None and "cannot reach" in report.error
    assert report.download_mbps is None and report.bytes_used == 0
    assert_valid_on_the_wire(report)


def test_a_server_that_is_not_an_endpoint_is_an_error(speedtest_server: StartServer) -> None:
    url, _ = speedtest_server()
    report = probe(url + "/elsewhere").collect(ME)
    assert report.error is not None and "not a speed-test endpoint" in report.error


def test_stalled_server_hits_the_time_limit(speedtest_server: StartServer) -> None:
    class Stall:
        async def take(self, nbytes: int) -> None:
            import asyncio

            await asyncio.sleep(30)

    url, _ = speedtest_server(download_pacer=Stall())
    report = probe(url, timeout_s=2.0).collect(ME)
    assert report.error is not None
    assert report.download_mbps is None


def test_speedtest_net_config_failure_is_an_error(
    monkeypatch: pytest.MonkeyPatch, free_port: int
) -> None:
    # A proxy on a closed local port: speedtest-cli's real config request fails here, and
    # nothing leaves the machine.
    for var in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{free_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    report = BandwidthProbe(backend="speedtest.net", server_url=None, timeout_s=5).collect(ME)
    assert report.error is not None and "speedtest.net" in report.error
    assert report.download_mbps is None and report.backend == "speedtest.net"
    assert_valid_on_the_wire(report)


def test_skipped_report_says_why() -> None:
    report = probe("http://127.0.0.1:1").skipped_report(ME, "daily data budget spent")
    assert report.skipped and report.error == "daily data budget spent"
    assert report.download_mbps is None and report.bytes_used == 0
    assert_valid_on_the_wire(report)


def test_estimated_bytes_bounds_what_a_test_uses(speedtest_server: StartServer) -> None:
    url, _ = speedtest_server(**paced(50.0))
    bandwidth = probe(url)
    report = bandwidth.collect(ME)
    assert report.error is None, report.error
    # from the measured rates, with headroom: the next test's bytes, bounded
    assert report.bytes_used <= bandwidth.estimated_bytes() <= 3 * report.bytes_used
    download_only = probe(url, upload=False)
    download_only.collect(ME)
    assert download_only.estimated_bytes() < bandwidth.estimated_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "fast.com", "server_url": None}, "fast.com"),
        ({"backend": "selfhosted", "server_url": None}, "server_url"),
        ({"backend": "selfhosted", "server_url": "ftp://x/speedtest"}, "ftp://x/speedtest"),
        ({"backend": "selfhosted", "server_url": "http://x", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_configuration_fails_at_start_naming_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        BandwidthProbe(**kwargs)  # type: ignore[arg-type]


def test_unused_port_really_is_closed(free_port: int) -> None:
    # guards test_server_down_is_an_error against a port that happens to be in use
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", free_port), timeout=1):
        pass
    assert realparts.free_port() > 0


def test_a_whole_test_is_14_requests_and_the_default_limit_allows_eight(
    speedtest_server: StartServer,
) -> None:
    from edugap.collector.config import SETTINGS_BY_NAME
    from edugap.collector.serving.speedtest import RateLimiter

    frozen = lambda: 1000.0  # noqa: E731 (no refill: only the burst counts)
    # 6 latency requests, then one request per stream each way
    requests = 6 + 2 * STREAMS.streams
    url, _ = speedtest_server(limiter=RateLimiter(60, requests - 1, clock=frozen), **paced())
    assert "upload failed" in (probe(url).collect(ME).error or "")
    url, _ = speedtest_server(limiter=RateLimiter(60, requests, clock=frozen), **paced())
    assert probe(url).collect(ME).error is None
    assert "HTTP 429: too many requests" in (probe(url).collect(ME).error or "")

    # the default: 4 streams each way
    burst = SETTINGS_BY_NAME["speedtest.burst"].default
    assert isinstance(burst, int) and burst // (6 + 2 * StreamPlan().streams) == 8
