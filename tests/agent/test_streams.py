"""The timed-stream test's two rules: the ramp-up left out of the figure, and link bytes."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from edugap.agent.probes import tcpinfo
from edugap.agent.probes.ramp import stable_rate


def cumulative(rates: list[float], step: float = 0.1) -> list[tuple[float, int]]:
    """Samples every `step` s of a flow at each of `rates` (bytes/s) in turn."""
    samples, total = [(0.0, 0)], 0.0
    for i, rate in enumerate(rates, start=1):
        total += rate * step
        samples.append((round(i * step, 3), int(total)))
    return samples


def test_slow_start_is_left_out_and_the_stable_rate_is_the_figure() -> None:
    # 1 s of ramp from nothing to 10 MB/s, then 9 s at 10 MB/s
    ramp = [10e6 * i / 10 for i in range(10)]
    rate, left_out = stable_rate(cumulative(ramp + [10e6] * 90))
    assert rate == pytest.approx(10e6, rel=0.01)
    assert 0.5 <= left_out <= 1.5
    # over the whole 10 s, as a fixed-length average would read it: 5 % low
    whole = cumulative(ramp + [10e6] * 90)[-1][1] / 10
    assert whole < 0.96 * 10e6


def test_a_flow_that_never_settles_leaves_out_at_most_half() -> None:
    rising = [1e6 * i for i in range(1, 101)]
    _, left_out = stable_rate(cumulative(rising))
    assert left_out <= 5.0


def test_a_dip_after_the_ramp_up_counts() -> None:
    # a loss episode in the middle of the phase is the link's, not start-up: it stays in
    flows = [10e6] * 40 + [2e6] * 10 + [10e6] * 50
    rate, left_out = stable_rate(cumulative(flows))
    assert left_out <= 0.6
    assert rate == pytest.approx((10e6 * 9 + 2e6 * 1 - 10e6 * left_out) / (10 - left_out), rel=0.02)


def test_too_few_samples_give_no_rate() -> None:
    assert stable_rate([(0.0, 0)]) == (0.0, 0.0)


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO byte counters are Linux's")
def test_kernel_counters_count_payload_both_ways_and_the_headers() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    payload = b"x" * 1_000_000
    received = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while len(received) < len(payload):
                received.extend(conn.recv(65536))
            conn.sendall(b"y" * 200_000)

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(server.getsockname()) as client:
        client.sendall(payload)
        got = 0
        while got < 200_000:
            got += len(client.recv(65536))
        thread.join()
        counters = tcpinfo.read(client)
    server.close()
    assert counters is not None
    assert counters.bytes_acked == counters.bytes_sent == len(payload)
    assert counters.bytes_received == 200_000
    assert counters.segs_out > 0 and counters.segs_in > 0
    link = counters.link_bytes()
    headers = (counters.segs_out + counters.segs_in) * tcpinfo.SEGMENT_OVERHEAD
    assert link == len(payload) + 200_000 + headers


def test_without_kernel_counters_the_estimate_adds_headers_for_full_segments() -> None:
    estimate = tcpinfo.estimate_link_bytes(0, 14_480_000)
    # 10,000 full segments and 5,000 ACKs, each with 66 bytes of headers, and a handshake
    assert estimate == 14_480_000 + (15_000 + 7) * tcpinfo.SEGMENT_OVERHEAD
