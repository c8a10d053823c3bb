"""The coverage page: its HTML, scripts and styles, and the outlines its map draws.

Everything the page needs comes from the collector (no CDN, no web fonts, no tiles), so it
works on a network without internet. The map is a small hand-written canvas renderer
(static/map.js): no library to fetch or build, and one canvas instead of a DOM node per school.
These routes are open like the page itself; the schools come from the API, behind its token.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edugap.collector.registry.outlines import Outlines
from edugap.collector.serving.encoding import send

STATIC = Path(__file__).parent / "static"


def page_routes(outlines: Outlines) -> list[BaseRoute]:
    """`/`, `/static/*` and `/outlines/{country,areas}.json`."""
    empty = {"type": "FeatureCollection", "features": []}
    bodies = {
        "country": msgspec.json.encode(outlines.country or empty),
        "areas": msgspec.json.encode(outlines.areas),
    }

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "coverage.html", media_type="text/html; charset=utf-8")

    async def outline(request: Request) -> Response:
        body = bodies.get(request.path_params["which"])
        if body is None:
            return Response("not found: outlines are country.json and areas.json", 404)
        return await run_in_threadpool(send, request, body, "application/geo+json")

    return [
        Route("/", page, methods=["GET"]),
        Route("/outlines/{which}.json", outline, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
