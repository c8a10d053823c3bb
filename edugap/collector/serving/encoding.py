"""Response compression: JSON, GeoJSON and CSV are gzipped for clients that accept it."""

from __future__ import annotations

import gzip

from starlette.requests import Request
from starlette.responses import Response

GZIP_MIN_BYTES = 1024  # smaller bodies gain nothing from compression
COMPRESSIBLE = ("application/json", "application/geo+json", "text/csv")


def accepts_gzip(request: Request) -> bool:
    """True when Accept-Encoding lists gzip without q=0."""
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def send(
    request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    """`body` as is, or gzip-compressed when the client accepts it and it is JSON or CSV.
    Call it in a worker thread: compressing megabytes must not stall the event loop."""
    headers = dict(headers or {})
    if media_type.split(";")[0] in COMPRESSIBLE:
        headers["Vary"] = "Accept-Encoding"
        if len(body) >= GZIP_MIN_BYTES and accepts_gzip(request):
            body = gzip.compress(body, 6, mtime=0)
            headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)
