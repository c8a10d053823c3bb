"""The collector's HTTP routes (Starlette): metrics, the JSON API, exports, health, the page.

Every route reads the current snapshot from `SnapshotHolder`; nothing here touches the broker,
and only /readyz and /api/v1/rejects touch the store.
"""

from __future__ import annotations

import hmac
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from edugap.collector.export import (
    DIALECTS,
    FORMATS,
    LANGUAGES,
    ExportError,
    ExportOptions,
    Filters,
    UnknownPlace,
    download_name,
    filter_schools,
    record,
    write_shortages,
)
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    Reject,
    SchoolStatus,
    Snapshot,
)
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.registry.outlines import Outlines
from edugap.collector.serving import shards
from edugap.collector.serving.encoding import accepts_gzip, send
from edugap.collector.serving.exposition import CONTENT_TYPE, Exposition
from edugap.collector.serving.mapdata import MapCache, map_payload
from edugap.collector.serving.openapi import openapi_document
from edugap.collector.serving.page import page_routes
from edugap.protocol.redact import redact

log = logging.getLogger(__name__)

MAX_PAGE = 1000
FILTERS = ("province", "commune", "level", "kind", "need")


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
    time_zone: str = "Asia/Ho_Chi_Minh"  # the policy's: the page shows local times in it
    outlines: Outlines = field(default_factory=Outlines)  # what the page's map draws


class BadRequest(ValueError):
    """A query parameter with a bad value; becomes a 400 naming the parameter."""


_json = msgspec.json.Encoder()


def _dump(value: Any) -> Response:
    return Response(_json.encode(value), media_type="application/json")


def _reply(request: Request, value: Any) -> Response:
    """`value` as JSON, compressed when the client accepts it."""
    return send(request, _json.encode(value), "application/json")


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


def _unauthorized() -> Response:
    return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
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
    raw = request.query_params.get(name)
    if raw is not None and raw not in allowed:
        raise BadRequest(f"query parameter '{name}' has value {raw!r}: one of {', '.join(allowed)}")
    return raw


def _filters(request: Request) -> Filters:
    """The filters given; an empty value is refused like any other bad one (the export's check
    names the accepted values), and an empty place is no place."""
    found: dict[str, str] = {}
    for name in FILTERS:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        value = raw.strip()
        if not value and name in ("kind", "need"):
            raise BadRequest(f"query parameter '{name}' has value {raw!r}: must not be empty")
        if value:
            found[name] = value
    return Filters(
        **found,
        connectivity=_choice(request, "connectivity", CONNECTIVITY_CLASSES),
        monitoring=_choice(request, "monitoring", MONITORING_STATES),
    )


def school_json(s: SchoolStatus) -> dict[str, Any]:
    """A school's status: the same object as a row of the JSON export (same rounding, times
    RFC 3339 UTC, `shortfalls` an array)."""
    return record(s)


def build_app(deps: HttpDeps) -> Starlette:
    """The ASGI app with every route; see docs/api.md and /openapi.json."""

    map_cache = MapCache()

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
            except UnknownPlace as e:
                return _error(404, str(e))
            except (BadRequest, ExportError) as e:
                return _error(400, str(e))

        return wrapped

    async def metrics(request: Request) -> Response:
        if not _authorized(request, deps.metrics_token):
            return _unauthorized()
        province = request.query_params.get("province")
        collector = request.query_params.get("collector", "") not in ("", "0", "false")
        if province is not None and not collector:
            # matched like the API matches names; a known province without schools is an empty
            # shard, a name that is no province at all is a mistake in the scrape config
            province = shards.resolve(province)
            if province is None:
                return _error(404, shards.unknown_message(request.query_params["province"]))
        # Rendering (once per snapshot) and joining run in a worker thread, off the event loop.
        if province is not None and not collector and accepts_gzip(request):
            body = await run_in_threadpool(deps.exposition.gzipped_shard, province)
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            return Response(body, media_type=CONTENT_TYPE, headers=headers)
        pieces: Iterable[bytes] = await run_in_threadpool(
            lambda: list(deps.exposition.text(province=province, collector=collector))
        )
        return StreamingResponse(iter(pieces), media_type=CONTENT_TYPE)

    async def scrape_targets(request: Request) -> Response:
        """Prometheus http_sd: one target per province shard the snapshot has schools in."""
        if not _authorized(request, deps.metrics_token):
            return _unauthorized()
        if deps.holder.current is None:
            return _error(503, "no snapshot yet: the first evaluation has not finished")
        # the address Prometheus reached us at is the one it should scrape
        address = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        present = await run_in_threadpool(deps.exposition.provinces)
        return _dump(shards.sd_targets(address, present))

    def schools(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        # the same matching as the exports (accents and case ignored), measured need first
        ordered = filter_schools(snap, _filters(request))
        page = ordered[offset : offset + limit]
        return _reply(
            request,
            {
                "generated_at": snap.generated_at.isoformat(),
                "total": len(ordered),
                "offset": offset,
                "limit": limit,
                "schools": [school_json(s) for s in page],
            },
        )

    def school(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        school_id = request.path_params["school_id"]
        found = snap.schools.get(school_id)
        if found is None:
            return _error(404, f"no school {school_id!r} in the current snapshot")
        return _reply(request, school_json(found))

    def provinces(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        return _reply(
            request,
            {
                "generated_at": snap.generated_at.isoformat(),
                "provinces": [asdict(a) for a in snap.provinces],
            },
        )

    def map_points(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        # compact columns for the coverage map (serving/mapdata.py), encoded once per filter
        f = _filters(request)
        zipped = accepts_gzip(request)
        body = map_cache.body(
            snap, f, zipped, lambda: map_payload(snap, filter_schools(snap, f), deps.time_zone)
        )
        headers = {"Vary": "Accept-Encoding"} | ({"Content-Encoding": "gzip"} if zipped else {})
        return Response(body, media_type="application/json", headers=headers)

    def shortages(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        fmt = _choice(request, "format", tuple(FORMATS)) or "json"
        options = ExportOptions(
            lang=_choice(request, "lang", LANGUAGES) or "vi",
            dialect=_choice(request, "dialect", DIALECTS) or "standard",
        )
        filters = _filters(request)
        out = io.BytesIO()
        write_shortages(snap, fmt, out, filters, options=options)
        body = out.getvalue()
        name = download_name(filters, fmt, snap)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return send(request, body, FORMATS[fmt].media_type, headers)

    def rejects(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, 1000)
        try:
            found = deps.rejects.recent_rejects(limit)
        except Exception as e:
            log.warning("reading rejects failed: %s", e)
            return _error(503, redact(f"store unavailable: {e}"))  # libpq may quote the DSN
        return _reply(
            request,
            {"rejects": [{**asdict(r), "received_at": r.received_at.isoformat()} for r in found]},
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
        return _reply(
            request, openapi_document(deps.api_token is not None, deps.metrics_token is not None)
        )

    routes: list[BaseRoute] = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/metrics/targets", scrape_targets, methods=["GET"]),
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
    routes += page_routes(deps.outlines)
    if deps.speedtest is not None:
        routes.append(Mount("/speedtest", app=deps.speedtest))
    return Starlette(routes=routes)
