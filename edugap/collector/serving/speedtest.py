"""The self-hosted speed-test endpoint: the collector's side of the contract in docs/protocol.md.

Routes (relative to where the app is mounted, normally `/speedtest`):

- `GET latency.txt` -> `test=test`
- `GET random{N}x{N}.jpg` -> 2*N*N incompressible bytes, streamed (never held in memory)
- `POST upload.php` -> reads and discards the body, answers `size=<bytes received>`
- `GET download?seconds=S` -> incompressible bytes for S seconds on one response, then its end
- `POST upload` -> reads and discards a body of any length (chunked), answers `bytes=<received>`

The first three are the fixed-size dialect of speedtest-cli (old agents, nginx); the last two
are the timed streams of the agent's own test (docs/protocol.md).

Every request is bounded: download bodies over `max_download_bytes` are 404 (as a static server
without that file would answer), upload bodies over `max_upload_bytes` are 413. With a
`RateLimiter`, an address that asks too often gets 429 with Retry-After. The app counts the
bytes it served and received, for tests and metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_MAX_DOWNLOAD_BYTES: Final = 2 * 4000 * 4000  # random4000x4000.jpg, speedtest.net's largest
DEFAULT_MAX_UPLOAD_BYTES: Final = 8 * 1024 * 1024
#: Longest timed stream either way; an upload body may run this long plus a few seconds.
DEFAULT_MAX_STREAM_SECONDS: Final = 30.0
_STREAM_GRACE_SECONDS: Final = 5.0
CHUNK_BYTES: Final = 64 * 1024
_NO_CACHE: Final = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}


class Pacer(Protocol):
    """Called before each chunk goes out or after each chunk comes in; may wait or raise."""

    async def take(self, nbytes: int) -> None: ...


class SpeedtestApp(Starlette):
    """The endpoint's ASGI app, with byte and request counters."""

    bytes_served: int = 0
    bytes_received: int = 0
    downloads: int = 0
    uploads: int = 0
    rejected: int = 0
    limited: int = 0  # requests refused with 429 by the rate limit


class RateLimiter:
    """A token bucket per client address: `burst` requests at once, refilled at `per_minute`.

    IPv6 addresses count per /64 (one subscriber's network), IPv4 per address. Memory is
    bounded: past `max_addresses` the least recently seen bucket is forgotten (it only gives
    that address a fresh burst). Used on the event loop's thread only.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError(f"rate {per_minute!r}/min and burst {burst!r} must be positive")
        self.per_second = per_minute / 60.0
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @staticmethod
    def key(address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def take(self, address: str) -> float:
        """0.0 if `address` may make a request now (and count it), else seconds to wait."""
        key, now = self.key(address), self.clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.per_second
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait


class _Limited:
    """ASGI middleware: 429 with Retry-After for an address over its rate."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, owner: list[SpeedtestApp]) -> None:
        self.app = app
        self.limiter = limiter
        self.owner = owner  # the SpeedtestApp, once built (for its counter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            wait = self.limiter.take(client[0] if client else "")
            if wait > 0:
                self.owner[0].limited += 1
                seconds = max(1, math.ceil(wait))
                response = PlainTextResponse(
                    f"too many speed-test requests from this address; retry in {seconds} s\n",
                    status_code=429,
                    headers={**_NO_CACHE, "Retry-After": str(seconds)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def speedtest_app(
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    download_pacer: Pacer | None = None,
    upload_pacer: Pacer | None = None,
    limiter: RateLimiter | None = None,
    max_stream_seconds: float = DEFAULT_MAX_STREAM_SECONDS,
    timed_streams: bool = True,
) -> SpeedtestApp:
    """Build the endpoint; mount it with `Mount("/speedtest", app=speedtest_app())`.

    The pacers are how a test or benchmark shapes the endpoint (a rate limit, a failure after
    some bytes); production runs without them. `limiter` caps requests per client address
    (`edugap serve` sets one from `speedtest.*`).
    """
    if min(max_upload_bytes, max_download_bytes, chunk_bytes, max_stream_seconds) <= 0:
        raise ValueError("speed-test limits must be positive byte counts")
    # One random block, repeated: incompressible, so no proxy or codec can shrink the test.
    block = os.urandom(chunk_bytes)

    async def latency(request: Request) -> Response:
        return PlainTextResponse("test=test", headers=_NO_CACHE)

    async def download(request: Request) -> Response:
        width: int = request.path_params["width"]
        height: int = request.path_params["height"]
        size = 2 * width * height
        if width != height or width < 1 or size > max_download_bytes:
            app.rejected += 1
            return PlainTextResponse(
                f"no such file: random{width}x{height}.jpg (square, at most "
                f"{max_download_bytes} bytes)\n",
                status_code=404,
                headers=_NO_CACHE,
            )
        app.downloads += 1

        async def body() -> AsyncIterator[bytes]:
            remaining = size
            while remaining > 0:
                n = min(chunk_bytes, remaining)
                if download_pacer is not None:
                    await download_pacer.take(n)
                # counted as handed to the server, before the yield: once a client holds the
                # whole body, the count already includes it (tests and metrics read it then)
                app.bytes_served += n
                remaining -= n
                yield block if n == chunk_bytes else block[:n]

        headers = {**_NO_CACHE, "Content-Length": str(size)}
        return StreamingResponse(body(), media_type="image/jpeg", headers=headers)

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                app.rejected += 1
                return PlainTextResponse(f"bad Content-Length {declared[:40]!r}\n", status_code=400)
            if int(declared) > max_upload_bytes:
                app.rejected += 1
                return _too_large(max_upload_bytes)
        got = await receive(
            request, lambda n: _too_large(max_upload_bytes) if n > max_upload_bytes else None
        )
        if isinstance(got, Response):
            return got
        app.uploads += 1
        return PlainTextResponse(f"size={got}", headers=_NO_CACHE)

    async def receive(
        request: Request, refuse: Callable[[int], Response | None]
    ) -> int | Response:
        """Read and discard a body, counting it; the bytes received, or the answer when
        `refuse` (asked after every chunk with the count so far) gives one."""
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                app.bytes_received += len(chunk)
                if (answer := refuse(received)) is not None:
                    app.rejected += 1
                    return answer
                if upload_pacer is not None and chunk:
                    await upload_pacer.take(len(chunk))
        except ClientDisconnect:
            # the client's upload time ran out mid-body: normal for a time-bounded test
            return Response(status_code=400)
        return received

    async def stream_down(request: Request) -> Response:
        seconds = _seconds(request.query_params.get("seconds", ""), max_stream_seconds)
        if seconds is None:
            app.rejected += 1
            return PlainTextResponse(
                f"download needs ?seconds= between 0 and {max_stream_seconds:g}\n",
                status_code=400,
                headers=_NO_CACHE,
            )
        app.downloads += 1

        async def body() -> AsyncIterator[bytes]:
            # The server ends the body on its own clock, so the client reads to the end and
            # every byte that crossed the link is one it counted; no connection is cut.
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if download_pacer is not None:
                    await download_pacer.take(chunk_bytes)
                app.bytes_served += chunk_bytes
                yield block

        return StreamingResponse(body(), media_type="application/octet-stream", headers=_NO_CACHE)

    async def stream_up(request: Request) -> Response:
        end = time.monotonic() + max_stream_seconds + _STREAM_GRACE_SECONDS
        got = await receive(request, lambda _n: _too_long() if time.monotonic() > end else None)
        if isinstance(got, Response):
            return got
        app.uploads += 1
        return PlainTextResponse(f"bytes={got}", headers=_NO_CACHE)

    def _too_long() -> Response:
        return PlainTextResponse(
            f"upload longer than {max_stream_seconds:g} s\n",
            status_code=413,
            headers={**_NO_CACHE, "Connection": "close"},
        )

    async def index(request: Request) -> Response:
        return PlainTextResponse(
            "edugap speed-test endpoint: latency.txt, download?seconds=S, upload, "
            "random{N}x{N}.jpg, upload.php\n",
            headers=_NO_CACHE,
        )

    owner: list[SpeedtestApp] = []
    middleware = [] if limiter is None else [Middleware(_Limited, limiter=limiter, owner=owner)]
    app = SpeedtestApp(
        routes=[
            Route("/", index),
            Route("/latency.txt", latency),
            Route("/random{width:int}x{height:int}.jpg", download),
            Route("/upload.php", upload, methods=["POST"]),
        ]
        + (
            [Route("/download", stream_down), Route("/upload", stream_up, methods=["POST"])]
            if timed_streams
            else []
        ),
        middleware=middleware,
    )
    owner.append(app)
    return app


def _seconds(text: str, most: float) -> float | None:
    """`text` as a stream length in seconds, if it is a number in (0, most]."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds <= most else None


def _too_large(limit: int) -> Response:
    return PlainTextResponse(
        f"upload body over {limit} bytes\n",
        status_code=413,
        headers={**_NO_CACHE, "Connection": "close"},
    )


class TokenBucket:
    """A pacer that holds traffic to `mbps` (all connections together), like a link would."""

    def __init__(self, mbps: float, *, burst_seconds: float = 0.002) -> None:
        if mbps <= 0:
            raise ValueError(f"rate {mbps!r} Mbps must be > 0")
        self.bytes_per_second = mbps * 1e6 / 8
        self.burst_seconds = burst_seconds
        self._next = 0.0  # when the link is free again (monotonic seconds)

    async def take(self, nbytes: int) -> None:
        now = time.monotonic()
        start = max(self._next, now - self.burst_seconds)
        self._next = start + nbytes / self.bytes_per_second
        delay = self._next - now - self.burst_seconds
        if delay > 0:
            await asyncio.sleep(delay)


@contextmanager
def serve_in_thread(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rcvbuf: int | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    **uvicorn_options: Any,
) -> Iterator[str]:
    """Serve `app` with uvicorn on a background thread; yields its base URL (http(s)://host:port).

    `rcvbuf` fixes the listening socket's receive buffer (inherited by accepted connections),
    which keeps kernel buffering from hiding a shaped upload rate in benchmarks. With a
    certificate and key it serves HTTPS. `uvicorn_options` go to `uvicorn.Config` (e.g. the
    `http` protocol class of a `edugap.collector.serving.httpguard.ConnectionGuard`).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this on Linux: without it, a small response written in two
    # pieces waits for the client's delayed ACK and every latency sample reads ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, port))
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="speedtest-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"speed-test server did not start on {host}:{bound_port}")
        time.sleep(0.01)
    try:
        yield f"{'https' if ssl_certfile else 'http'}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
