"""The self-hosted speed-test endpoint's HTTP contract, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from collector.speedtest_server import SpeedtestApp, serve_in_thread, speedtest_app


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


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        speedtest_app(max_upload_bytes=0)
