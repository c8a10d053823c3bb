"""The self-hosted speed-test endpoint's HTTP contract, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from edugap.collector.serving.speedtest import (
    RateLimiter,
    SpeedtestApp,
    serve_in_thread,
    speedtest_app,
)


@pytest.fixture
def endpoint() -> Iterator[tuple[httpx.Client, SpeedtestApp]]:
    app = speedtest_app(max_upload_bytes=1_000_000, max_download_bytes=2 * 1000 * 1000)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client, app


def test_latency_answer(endpoint: tuple[httpx.Client, SpeedtestApp]) -> None:
    client, _ = endpoint
    response = client.get("/latency.txt", params={"x": "1700000000000.0"})
    assert response.status_code == 200 and response.text == "test=test"
    assert response.headers["cache-control"] == "no-store"


def test_download_is_2_n_squared_incompressible_bytes(
    endpoint: tuple[httpx.Client, SpeedtestApp],
) -> None:
    client, app = endpoint
    response = client.get("/random350x350.jpg")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) == 245_000
    assert len(set(response.content[:4096])) > 200  # random bytes, not a compressible pattern
    assert (app.bytes_served, app.downloads) == (245_000, 1)


@pytest.mark.parametrize("path", ["/random350x500.jpg", "/random1001x1001.jpg", "/random0x0.jpg"])
def test_downloads_outside_the_contract_are_404(
    endpoint: tuple[httpx.Client, SpeedtestApp], path: str
) -> None:
    client, app = endpoint
    assert client.get(path).status_code == 404
    assert app.bytes_served == 0 and app.rejected == 1


def test_upload_answers_the_size_it_received(endpoint: tuple[httpx.Client, SpeedtestApp]) -> None:
    client, app = endpoint
    body = b"content1=" + b"0123456789" * 10_000
    response = client.post("/upload.php", content=body)
    assert response.status_code == 200 and response.text == f"size={len(body)}"
    assert (app.bytes_received, app.uploads) == (len(body), 1)


def test_upload_over_the_cap_is_413(endpoint: tuple[httpx.Client, SpeedtestApp]) -> None:
    client, app = endpoint
    declared = client.post("/upload.php", content=b"x" * 1_000_001)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        for _ in range(40):
            yield b"y" * 65_536

    streamed = client.post("/upload.php", content=chunks())
    assert streamed.status_code == 413
    assert app.rejected == 2 and app.uploads == 0
    assert app.bytes_received < 40 * 65_536 - 1_000_000  # it stopped reading near the cap


def test_upload_needs_post(endpoint: tuple[httpx.Client, SpeedtestApp]) -> None:
    client, _ = endpoint
    assert client.get("/upload.php").status_code == 405


def test_timed_download_streams_until_its_seconds_are_up_then_ends(
    endpoint: tuple[httpx.Client, SpeedtestApp],
) -> None:
    client, app = endpoint
    response = client.get("/download", params={"seconds": "0.2", "x": "1"})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    # far over the fixed-size cap of this endpoint: the stream is bounded by time, not size
    assert len(response.content) == app.bytes_served > 2 * 1000 * 1000
    assert len(set(response.content[:4096])) > 200
    assert app.downloads == 1


@pytest.mark.parametrize("seconds", ["", "0", "-1", "31", "nan", "inf", "ten"])
def test_timed_download_outside_the_contract_is_400(
    endpoint: tuple[httpx.Client, SpeedtestApp], seconds: str
) -> None:
    client, app = endpoint
    assert client.get("/download", params={"seconds": seconds}).status_code == 400
    assert app.bytes_served == 0 and app.rejected == 1


def test_timed_upload_takes_a_chunked_body_of_any_length(
    endpoint: tuple[httpx.Client, SpeedtestApp],
) -> None:
    client, app = endpoint
    chunks = [bytes(range(256)) * 256] * 40  # 2.6 MB: over the fixed-size upload cap

    response = client.post("/upload", content=iter(chunks))  # an iterator goes chunked

    assert response.status_code == 200 and response.text == f"bytes={len(chunks) * 65536}"
    assert (app.bytes_received, app.uploads) == (len(chunks) * 65536, 1)


def test_timed_upload_longer_than_the_stream_limit_is_cut_off() -> None:
    import time

    app = speedtest_app(max_stream_seconds=0.2)

    def slow() -> Iterator[bytes]:
        for _ in range(100):
            time.sleep(0.1)
            yield b"x" * 1000

    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        try:
            status = client.post("/upload", content=slow()).status_code
        except httpx.HTTPError:
            status = 413  # the server answered and closed while the body was still going
    assert status == 413 and app.rejected == 1 and app.uploads == 0


def test_an_endpoint_without_timed_streams_answers_404_like_a_static_server() -> None:
    app = speedtest_app(timed_streams=False)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/download", params={"seconds": "1"}).status_code == 404
        assert client.get("/random350x350.jpg").status_code == 200


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        speedtest_app(max_upload_bytes=0)


class FrozenClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_gives_a_burst_then_refills() -> None:
    clock = FrozenClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("192.0.2.7") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("192.0.2.7") == pytest.approx(1.0)  # one a second
    assert limiter.take("192.0.2.8") == 0.0  # another address has its own bucket
    clock.now += 1.0
    assert limiter.take("192.0.2.7") == 0.0
    assert limiter.take("192.0.2.7") > 0


def test_rate_limiter_counts_an_ipv6_subscriber_network_once() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, clock=FrozenClock())
    # one /64 is one subscriber: rotating the interface id does not buy a fresh burst
    assert limiter.take("2001:db8:1:2::1") == 0.0
    assert limiter.take("2001:db8:1:2:dead:beef:0:7") == 0.0
    assert limiter.take("2001:db8:1:2:ffff::") > 0
    assert limiter.take("2001:db8:1:3::1") == 0.0
    assert RateLimiter.key("::ffff:192.0.2.7") == RateLimiter.key("192.0.2.7")


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, max_addresses=100, clock=FrozenClock())
    for i in range(10_000):
        limiter.take(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_an_address_over_its_rate_gets_429_and_others_are_served() -> None:
    clock = FrozenClock()
    app = speedtest_app(limiter=RateLimiter(per_minute=30, burst=5, clock=clock))
    abuser = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=10, transport=abuser) as flood,
        httpx.Client(base_url=url, timeout=10) as school,
    ):
        assert [flood.get("/random350x350.jpg").status_code for _ in range(5)] == [200] * 5
        refused = flood.get("/random350x350.jpg")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"  # 30 a minute: one every 2 s
        assert flood.post("/upload.php", content=b"x" * 1000).status_code == 429
        assert school.get("/latency.txt").status_code == 200  # another address
        clock.now += 2.0
        assert flood.get("/latency.txt").status_code == 200
        assert flood.get("/latency.txt").status_code == 429
    assert app.limited == 3 and app.downloads == 5
