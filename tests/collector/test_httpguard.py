"""The HTTP guard on a real uvicorn server and real sockets, one adversary per test: half-open
crowds, a trickled request head, a stalled body, a client that never reads, idle keep-alive."""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from edugap.collector.serving.httpguard import RESERVED_FDS, ConnectionGuard, connection_limit
from edugap.collector.serving.speedtest import serve_in_thread
from tests.collector.http_helpers import closed_by_server
from tests.collector.mqtt_helpers import wait_until

HALF_HEAD = b"GET /ok HTTP/1.1\r\nHost: crowd\r\n"  # no blank line: the head never ends


class Held:
    """Requests to /hold wait until release(); `entered` counts those waiting."""

    def __init__(self) -> None:
        self.entered = 0
        self.released = threading.Event()


def make_app(held: Held) -> Starlette:
    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def hold(request: Request) -> Response:
        held.entered += 1
        while not held.released.is_set():
            await asyncio.sleep(0.01)
        return PlainTextResponse("held")

    async def echo(request: Request) -> Response:
        return PlainTextResponse(f"{len(await request.body())}")

    async def big(request: Request) -> Response:
        async def body() -> Iterator[bytes]:  # type: ignore[misc]
            for _ in range(2000):
                yield b"x" * 65536

        return StreamingResponse(body())  # type: ignore[arg-type]

    return Starlette(
        routes=[
            Route("/ok", ok),
            Route("/hold", hold),
            Route("/echo", echo, methods=["POST"]),
            Route("/big", big),
        ]
    )


@contextmanager
def guarded(
    max_connections: int = 100,
    header_timeout: float = 30.0,
    idle_timeout: int = 30,
    send_timeout: float = 60.0,
) -> Iterator[tuple[str, ConnectionGuard, Held]]:
    guard = ConnectionGuard(max_connections, header_timeout, idle_timeout, send_timeout)
    held = Held()
    try:
        with serve_in_thread(
            make_app(held), http=guard.protocol(), ws="none", timeout_keep_alive=idle_timeout
        ) as url:
            yield url, guard, held
    finally:
        held.released.set()


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_a_full_request_takes_the_place_of_the_oldest_half_open_one() -> None:
    with guarded(max_connections=3) as (url, guard, _):
        crowd = [connect(url) for _ in range(3)]
        for sock in crowd:
            sock.sendall(HALF_HEAD)
        wait_until(lambda: len(guard.waiting) == 3, what="3 half-open connections")
        assert httpx.get(f"{url}/ok", timeout=10).text == "ok"
        assert closed_by_server(crowd[0])  # the one that waited longest
        assert guard.closed["evicted"] == 1
        assert guard.closed["refused"] == 0
        for sock in crowd:
            sock.close()


def test_connections_busy_with_requests_are_kept_and_the_newcomer_refused() -> None:
    with guarded(max_connections=2) as (url, guard, held):
        results: list[str] = []

        def slow() -> None:
            results.append(httpx.get(f"{url}/hold", timeout=30).text)

        workers = [threading.Thread(target=slow) for _ in range(2)]
        for w in workers:
            w.start()
        wait_until(lambda: held.entered == 2, what="two requests in progress")
        refused = httpx.get(f"{url}/ok", timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        held.released.set()
        for w in workers:
            w.join(30)
        assert results == ["held", "held"]  # neither busy request was cut for the newcomer
        assert guard.closed["refused"] == 1 and guard.closed["evicted"] == 0


def test_a_trickled_request_head_is_cut_at_the_header_timeout() -> None:
    with guarded(header_timeout=1.0) as (url, guard, _):
        sock = connect(url)
        sock.settimeout(0.2)
        head = b"GET /ok HTTP/1.1\r\nHost: slowloris\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n\r\n"
        sent = 0
        closed = False
        while sent < len(head) and not closed:  # one byte at a time: data keeps arriving
            try:
                sock.send(head[sent : sent + 1])
                sent += 1
                closed = closed_by_server(sock)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed and sent < len(head), "the server waited for a trickled head"
        assert guard.closed["header_timeout"] == 1
        sock.close()


def test_a_stalled_request_body_is_cut() -> None:
    with guarded(header_timeout=1.0) as (url, guard, _):
        sock = connect(url)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10)
        assert closed_by_server(sock)
        assert guard.closed["body_timeout"] == 1
        sock.close()
        # a body that keeps coming is read whole
        assert httpx.post(f"{url}/echo", content=b"z" * 100_000, timeout=10).text == "100000"


def test_a_client_that_stops_reading_its_response_is_dropped() -> None:
    with guarded(send_timeout=1.0) as (url, guard, _):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        host, port = url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: guard.closed["send_timeout"] == 1, what="the stalled response dropped")
        assert not guard.open
        sock.close()


def test_an_idle_keep_alive_connection_is_closed() -> None:
    with guarded(idle_timeout=1) as (url, guard, _):
        sock = connect(url)
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock)
        assert guard.closed["idle"] == 1 and guard.closed["header_timeout"] == 0
        sock.close()


def test_the_limit_stays_below_the_descriptor_limit() -> None:
    assert connection_limit(1000, 1024) == 1024 - RESERVED_FDS
    assert connection_limit(1000, 65536) == 1000
    assert connection_limit(1000, 100) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE semantics of Linux")
def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "from edugap.collector.serving.httpguard import raise_nofile_limit; "
        "print(raise_nofile_limit())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)),
    )
    assert done.stdout.strip() == "4096"
