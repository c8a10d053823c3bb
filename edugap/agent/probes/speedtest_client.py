"""speedtest-cli 2.1.3 wrapped: its own download and upload threads, every byte and error counted.

speedtest-cli swallows most transfer errors inside its threads (a download cut off mid-body just
counts fewer bytes), so its speeds alone cannot tell a good test from a broken one. The wrapper
here puts a counting opener under those threads: it records the bytes each request moved and
every error it met, and the bandwidth probe fails the test when any request failed.

For the self-hosted backend the session never fetches speedtest.net's configuration: it is given
a synthetic one and the province's endpoint as its only server (see docs/protocol.md,
"Self-hosted speed-test endpoint").
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

import speedtest

#: Sides N of the `random{N}x{N}.jpg` files a self-hosted test downloads; each is 2*N*N bytes.
DOWNLOAD_SIDES: Final = (350, 500, 750, 1000, 1500, 2000, 2500, 3000)
#: Body sizes of the upload requests a self-hosted test sends.
UPLOAD_SIZES: Final = (262_144, 524_288, 1_048_576)
LATENCY_SAMPLES: Final = 5
#: Unsent bytes a test connection may queue in the kernel (Linux, macOS: TCP_NOTSENT_LOWAT).
UNSENT_BYTES: Final = 16 * 1024
_NOTSENT_LOWAT: Final[int | None] = getattr(socket, "TCP_NOTSENT_LOWAT", None)
#: speedtest-cli's upload body: this prefix, then these characters over and over.
_UPLOAD_PREFIX: Final = b"content1="
_UPLOAD_CHARS: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: One read-only block of the repeating characters that every upload body is read from; a read
#: returns at most one block less one period, so the block is the only upload memory of a test.
_UPLOAD_BLOCK: Final = _UPLOAD_CHARS * 1821  # 65,556 bytes
_UPLOAD_MAX_READ: Final = len(_UPLOAD_BLOCK) - len(_UPLOAD_CHARS)


def download_bytes(side: int) -> int:
    """Body size of `random{side}x{side}.jpg` under the self-hosted contract."""
    return 2 * side * side


@dataclass(frozen=True, slots=True)
class SelfhostedPlan:
    """What one self-hosted test may request: files, repeats, threads and seconds per phase."""

    download_sides: tuple[int, ...] = DOWNLOAD_SIDES
    download_repeats: int = 2
    download_threads: int = 4
    upload_sizes: tuple[int, ...] = UPLOAD_SIZES
    upload_repeats: int = 4
    upload_threads: int = 4
    seconds: float = 10.0

    def max_download_bytes(self) -> int:
        return sum(download_bytes(s) for s in self.download_sides) * self.download_repeats

    def max_upload_bytes(self) -> int:
        return sum(self.upload_sizes) * self.upload_repeats

    def config(self) -> dict[str, Any]:
        """speedtest-cli's `config` dict, as its get_config() would have built it."""
        return {
            "client": {"ip": "", "isp": "", "lat": "0", "lon": "0", "country": ""},
            "ignore_servers": [],
            "sizes": {"download": list(self.download_sides), "upload": list(self.upload_sizes)},
            "counts": {"download": self.download_repeats, "upload": self.upload_repeats},
            "threads": {"download": self.download_threads, "upload": self.upload_threads},
            "length": {"download": self.seconds, "upload": self.seconds},
            "upload_max": len(self.upload_sizes) * self.upload_repeats,
        }


@dataclass
class TransferLog:
    """Bytes moved and errors met by all requests of one test; shared by speedtest-cli's threads."""

    received: int = 0
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.received += received
            self.sent += sent

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    @property
    def total(self) -> int:
        return self.received + self.sent


def describe_error(exc: BaseException) -> str:
    """One line for a test's `error`: the HTTP status, the URL error's reason, or type: message."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _CountingResponse:
    """A response whose body reads are counted; a failed read is logged and ends the body."""

    def __init__(self, response: Any, log: TransferLog, url: str) -> None:
        self._response = response
        self._log = log
        self._url = url

    def read(self, n: int = -1) -> bytes:
        try:
            chunk: bytes = self._response.read(n)
        except Exception as e:  # IncompleteRead escapes speedtest-cli's own handlers
            self._log.error(f"reading {self._url}: {describe_error(e)}")
            return b""
        self._log.add(received=len(chunk))
        if not chunk and n != 0:
            # http.client's read(amt) answers b"" when the connection closes before
            # Content-Length bytes arrived, instead of raising IncompleteRead.
            missing = getattr(self._response, "length", None)
            if isinstance(missing, int) and missing > 0:
                self._log.error(f"reading {self._url}: connection closed {missing} bytes early")
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)


class UploadBody:
    """The bytes of speedtest-cli's upload body of `length` bytes, without holding them.

    speedtest-cli pre-allocates every upload body of a test before the first is sent (about
    7 MB for the self-hosted plan, far more for speedtest.net's sizes). This reader produces
    the same bytes as views of one shared block, so the upload phase holds no body at all.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self._pos = 0

    def read(self, n: int = -1) -> bytes | memoryview:
        left = self.length - self._pos
        if left <= 0:
            return b""
        n = left if n is None or n < 0 else min(n, left)
        prefix = len(_UPLOAD_PREFIX)
        if self._pos < prefix:
            chunk: bytes | memoryview = _UPLOAD_PREFIX[self._pos : self._pos + n]
        else:
            offset = (self._pos - prefix) % len(_UPLOAD_CHARS)
            chunk = memoryview(_UPLOAD_BLOCK)[offset : offset + min(n, _UPLOAD_MAX_READ)]
        self._pos += len(chunk)
        return chunk


class CountingOpener:
    """Wraps speedtest-cli's opener: counts request and response bodies, records failures."""

    def __init__(self, opener: Any, log: TransferLog) -> None:
        self._opener = opener
        self._log = log

    def open(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        url = request if isinstance(request, str) else request.get_full_url()
        url = url.split("?", 1)[0]
        body = None if isinstance(request, str) else request.data
        if isinstance(body, speedtest.HTTPUploaderData) and body._data is None:
            # Session.upload() asks speedtest-cli not to pre-allocate: read from the shared block
            body._data = UploadBody(int(body.length))
        try:
            response = self._opener.open(request, *args, **kwargs)
        except speedtest.SpeedtestUploadTimeout:
            raise  # the upload phase's time is up: the normal end of a bounded test
        except OSError as e:
            self._log.error(f"{url}: {describe_error(e)}")
            raise
        except Exception as e:
            self._log.error(f"{url}: {describe_error(e)}")
            # speedtest-cli's threads only catch OSError-like errors; keep them quiet
            raise urllib.error.URLError(e) from e
        finally:
            if isinstance(body, speedtest.HTTPUploaderData):
                self._log.add(sent=sum(body.total))
            elif isinstance(body, bytes):
                self._log.add(sent=len(body))
        return _CountingResponse(response, self._log, url)


def _limit_unsent(sock: socket.socket) -> None:
    # speedtest-cli counts upload bytes as its body is read, i.e. when they enter the kernel's
    # send buffer, which autotunes up to megabytes. Capping the unsent queue makes "read" mean
    # "on the wire", so a slow uplink's test stops on time and its bytes are real.
    if _NOTSENT_LOWAT is not None:
        with contextlib.suppress(OSError):  # an OS without it still runs the test
            sock.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, UNSENT_BYTES)


class _HTTPConnection(speedtest.SpeedtestHTTPConnection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        _limit_unsent(self.sock)


class _HTTPSConnection(speedtest.SpeedtestHTTPSConnection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        _limit_unsent(self.sock)


class _HTTPHandler(speedtest.SpeedtestHTTPHandler):  # type: ignore[misc]
    def http_open(self, req: urllib.request.Request) -> Any:
        connect = speedtest._build_connection(_HTTPConnection, self.source_address, self.timeout)
        return self.do_open(connect, req)


class _HTTPSHandler(speedtest.SpeedtestHTTPSHandler):  # type: ignore[misc]
    def https_open(self, req: urllib.request.Request) -> Any:
        connect = speedtest._build_connection(
            _HTTPSConnection, self.source_address, self.timeout, context=self._context
        )
        return self.do_open(connect, req)


def build_opener(timeout: float) -> urllib.request.OpenerDirector:
    """speedtest.build_opener's handlers, with connections that cap their unsent queue."""
    opener = urllib.request.OpenerDirector()
    opener.addheaders = [("User-agent", speedtest.build_user_agent())]
    for handler in (
        urllib.request.ProxyHandler(),
        _HTTPHandler(timeout=timeout),
        _HTTPSHandler(timeout=timeout),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class Shutdown(threading.Event):
    """A stop flag speedtest-cli's threads poll (they call the old `isSet` name)."""

    def isSet(self) -> bool:
        return self.is_set()


class Session(speedtest.Speedtest):  # type: ignore[misc]
    """speedtest.Speedtest whose opener counts bytes; with `config`, never asks speedtest.net."""

    _opener: Any

    def __init__(
        self,
        *,
        log: TransferLog,
        synthetic_config: dict[str, Any] | None = None,
        timeout: float = 10.0,
        secure: bool = False,
        shutdown_event: threading.Event | None = None,
    ) -> None:
        self._log = log
        self._synthetic_config = synthetic_config
        super().__init__(timeout=timeout, secure=secure, shutdown_event=shutdown_event)

    def get_config(self) -> dict[str, Any]:
        # speedtest.Speedtest.__init__ calls get_config() right after building its opener:
        # the one place to slip the counting opener in before any request is made.
        if not isinstance(self._opener, CountingOpener):
            self._opener = CountingOpener(build_opener(self._timeout), self._log)
        if self._synthetic_config is None:
            config: dict[str, Any] = super().get_config()
            return config
        self.config.update(self._synthetic_config)
        self.lat_lon = (0.0, 0.0)
        return dict(self.config)

    def upload(
        self, callback: Any = speedtest.do_nothing, pre_allocate: bool = True, threads: Any = None
    ) -> float:
        # pre_allocate is ignored: bodies are always read from one shared block (UploadBody)
        bits: float = super().upload(callback=callback, pre_allocate=False, threads=threads)
        return bits

    def use_server(self, server: dict[str, Any]) -> None:
        """Test against this server only, as get_best_server() would have chosen it."""
        self.servers = {0: [server]}
        self.closest = [server]
        self._best.update(server)
        self.results.server = server
        self.results.ping = server.get("latency", 0)


def upload_url(server_url: str) -> str:
    """The endpoint's upload URL; the download and latency URLs sit next to it."""
    base = server_url.rstrip("/")
    return base if base.endswith("/upload.php") else base + "/upload.php"


@dataclass(frozen=True, slots=True)
class Latency:
    median_ms: float
    jitter_ms: float | None


def measure_latency(
    server_url: str, log: TransferLog, *, timeout: float, samples: int = LATENCY_SAMPLES
) -> Latency:
    """Round-trip time of `latency.txt` requests on one kept-alive connection.

    The first request opens the connection (TCP and TLS handshakes) and is not timed, so the
    figure is one HTTP round trip, comparable between http and https endpoints.
    """
    parts = urllib.parse.urlsplit(upload_url(server_url))
    path = parts.path.rsplit("/", 1)[0] + "/latency.txt"
    conn_class = (
        speedtest.SpeedtestHTTPSConnection
        if parts.scheme == "https"
        else speedtest.SpeedtestHTTPConnection
    )
    conn = conn_class(parts.netloc, timeout=timeout)
    times: list[float] = []
    try:
        for i in range(samples + 1):
            start = time.perf_counter()
            conn.request(
                "GET", f"{path}?x={time.time_ns()}.{i}", headers={"Connection": "keep-alive"}
            )
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            log.add(received=len(body))
            if response.status == 429:  # the endpoint's rate limit, not a wrong endpoint
                raise ValueError(
                    f"{parts.scheme}://{parts.netloc}{path} answered HTTP 429: too many "
                    f"requests from this address (retry after "
                    f"{response.getheader('Retry-After', '?')} s)"
                )
            if response.status != 200 or not body.startswith(b"test=test"):
                raise ValueError(
                    f"{parts.scheme}://{parts.netloc}{path} answered HTTP {response.status} "
                    f"{body[:40]!r}: not a speed-test endpoint"
                )
            if i:
                times.append(elapsed * 1000.0)
    except (OSError, http.client.HTTPException) as e:
        raise ConnectionError(
            f"cannot reach {parts.scheme}://{parts.netloc}: {describe_error(e)}"
        ) from e
    finally:
        conn.close()
    jitter = (
        statistics.fmean(abs(a - b) for a, b in itertools.pairwise(times))
        if len(times) > 1
        else None
    )
    return Latency(statistics.median(times), jitter)
