"""The collector's HTTP routes (Starlette): metrics, the JSON API, exports, health, the page.

Every route reads the current snapshot from `SnapshotHolder`; nothing here touches the broker,
and only /readyz and /api/v1/rejects touch the store.
"""

from __future__ import annotations

import hmac
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from edugap.collector.export import FORMATS, ExportError, Filters, filter_schools, write_shortages
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    Reject,
    SchoolStatus,
    Snapshot,
)
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import CONTENT_TYPE, Exposition
from edugap.collector.serving.openapi import openapi_document
from edugap.protocol.redact import redact

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_PAGE = 1000
FILTERS = ("province", "commune", "level", "kind")


class RejectSource(Protocol):
    """Where the latest rejected messages come from (the store)."""

    def recent_rejects(self, limit: int = 100) -> list[Reject]: ...


@dataclass(frozen=True, slots=True)
class HttpDeps:
    """What the routes need; app.py passes the real ones, tests their own."""

    holder: SnapshotHolder
    exposition: Exposition
    rejects: RejectSource
    readiness: Callable[[], dict[str, bool]]  # check name -> passed (may block: run in a thread)
    # check name -> why it fails, with a hint (e.g. the broker's connection cause)
    causes: Callable[[], dict[str, str]] = dict
    api_token: str | None = None
    metrics_token: str | None = None
    speedtest: ASGIApp | None = None


class BadRequest(ValueError):
    """A query parameter with a bad value; becomes a 400 naming the parameter."""


_json = msgspec.json.Encoder()


def _dump(value: Any) -> Response:
    return Response(_json.encode(value), media_type="application/json")


def _error(status: int, message: str, **extra: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=extra or None)


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    # constant-time comparison: the token guards the whole national list
    # (as bytes: compare_digest refuses non-ASCII str, and a header may carry anything)
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _accepts_gzip(request: Request) -> bool:
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _unauthorized() -> Response:
    return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"query parameter '{name}' has value {raw!r}: expected an integer"
        ) from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' has value {raw!r}: must be {low}..{high}")
    return value


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name) or None
    if raw is not None and raw not in allowed:
        raise BadRequest(f"query parameter '{name}' has value {raw!r}: one of {', '.join(allowed)}")
    return raw


def _filters(request: Request) -> Filters:
    found = {k: v for k in FILTERS if (v := request.query_params.get(k, "").strip())}
    return Filters(**found)


def school_json(s: SchoolStatus) -> dict[str, Any]:
    """A school's status as JSON-ready values (times as RFC 3339 strings)."""
    data = asdict(s)
    data["shortfalls"] = list(s.shortfalls)
    data["last_report"] = s.last_report.isoformat() if s.last_report else None
    return data


def build_app(deps: HttpDeps) -> Starlette:
    """The ASGI app with every route; see docs/api.md and /openapi.json."""

    def snapshot_or_503() -> Snapshot | Response:
        snap = deps.holder.current
        if snap is None:
            return _error(503, "no snapshot yet: the first evaluation has not finished")
        return snap

    def api(handler: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        """Check the token, then run the handler in a worker thread: filtering and encoding
        60,000 schools takes long enough to stall every other request on the event loop."""

        async def wrapped(request: Request) -> Response:
            if not _authorized(request, deps.api_token):
                return _unauthorized()
            try:
                return await run_in_threadpool(handler, request)
            except (BadRequest, ExportError) as e:
                return _error(400, str(e))

        return wrapped

    async def metrics(request: Request) -> Response:
        if not _authorized(request, deps.metrics_token):
            return _unauthorized()
        province = request.query_params.get("province")
        collector = request.query_params.get("collector", "") not in ("", "0", "false")
        # an unknown province is an empty shard, not an error: it may have no schools yet.
        # Rendering (once per snapshot) and joining run in a worker thread, off the event loop.
        if province is not None and not collector and _accepts_gzip(request):
            body = await run_in_threadpool(deps.exposition.gzipped_shard, province)
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            return Response(body, media_type=CONTENT_TYPE, headers=headers)
        pieces: Iterable[bytes] = await run_in_threadpool(
            lambda: list(deps.exposition.text(province=province, collector=collector))
        )
        return StreamingResponse(iter(pieces), media_type=CONTENT_TYPE)

    def schools(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        connectivity = _choice(request, "connectivity", CONNECTIVITY_CLASSES)
        monitoring = _choice(request, "monitoring", MONITORING_STATES)
        f = _filters(request)
        # the same matching as the exports (accents and case ignored), highest priority first
        ordered = [
            s
            for s in filter_schools(snap, f.province, f.commune, f.level, f.kind)
            if (connectivity is None or s.connectivity == connectivity)
            and (monitoring is None or s.monitoring == monitoring)
        ]
        page = ordered[offset : offset + limit]
        return _dump(
            {
                "generated_at": snap.generated_at.isoformat(),
                "total": len(ordered),
                "offset": offset,
                "limit": limit,
                "schools": [school_json(s) for s in page],
            }
        )

    def school(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        school_id = request.path_params["school_id"]
        found = snap.schools.get(school_id)
        if found is None:
            return _error(404, f"no school {school_id!r} in the current snapshot")
        return _dump(school_json(found))

    def provinces(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        return _dump(
            {
                "generated_at": snap.generated_at.isoformat(),
                "provinces": [asdict(a) for a in snap.provinces],
            }
        )

    def map_points(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        # compact rows for the coverage map: 60,000 schools stay a few MB
        points = [
            [s.school_id, s.lat, s.lon, s.connectivity, s.monitoring, s.province]
            for s in snap.schools.values()
            if s.lat is not None and s.lon is not None
        ]
        fields = ["school_id", "lat", "lon", "connectivity", "monitoring", "province"]
        return _dump(
            {"generated_at": snap.generated_at.isoformat(), "fields": fields, "points": points}
        )

    def shortages(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise BadRequest(
                f"query parameter 'format' has value {fmt!r}: one of {', '.join(FORMATS)}"
            )
        filters = _filters(request)
        out = io.BytesIO()
        write_shortages(snap, fmt, out, filters)
        body = out.getvalue()
        name = f"shortages.{FORMATS[fmt].extension}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(body, media_type=FORMATS[fmt].media_type, headers=headers)

    def rejects(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, 1000)
        try:
            found = deps.rejects.recent_rejects(limit)
        except Exception as e:
            log.warning("reading rejects failed: %s", e)
            return _error(503, redact(f"store unavailable: {e}"))  # libpq may quote the DSN
        return _dump(
            {"rejects": [{**asdict(r), "received_at": r.received_at.isoformat()} for r in found]}
        )

    async def healthz(request: Request) -> Response:
        return _dump({"status": "alive"})

    async def readyz(request: Request) -> Response:
        checks = await run_in_threadpool(deps.readiness)
        ready = all(checks.values())
        body: dict[str, Any] = {"ready": ready, "checks": checks}
        if not ready and (why := deps.causes()):
            body["why"] = why
        return JSONResponse(body, status_code=200 if ready else 503)

    async def openapi(request: Request) -> Response:
        return _dump(openapi_document())

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "coverage.html", media_type="text/html; charset=utf-8")

    routes: list[BaseRoute] = [
        Route("/", page, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/schools", api(schools), methods=["GET"]),
        Route("/api/v1/schools/{school_id}", api(school), methods=["GET"]),
        Route("/api/v1/provinces", api(provinces), methods=["GET"]),
        Route("/api/v1/map", api(map_points), methods=["GET"]),
        Route("/api/v1/shortages", api(shortages), methods=["GET"]),
        Route("/api/v1/rejects", api(rejects), methods=["GET"]),
    ]
    if deps.speedtest is not None:
        routes.append(Mount("/speedtest", app=deps.speedtest))
    return Starlette(routes=routes)
