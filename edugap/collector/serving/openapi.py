"""The OpenAPI 3 document of the collector's HTTP API (served at /openapi.json).

Written by hand rather than generated, so it says what a client may rely on; a test checks that
every route of the app is described here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edugap.collector.export import FORMATS, KIND_ANY
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    SHORTFALL_KINDS,
    SPEEDTEST_STATES,
)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


_FILTERS = [
    _query("province", "only schools of this province (accents and case ignored)",
           {"type": "string"}),
    _query("commune", "only schools of this commune (accents and case ignored)",
           {"type": "string"}),
    _query("level", "only schools of this level", {"type": "string"}),
    _query("kind", "only schools with this shortfall ('any': with at least one)",
           {"type": "string", "enum": [*SHORTFALL_KINDS, KIND_ANY]}),
]  # fmt: skip
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json("a query parameter has a bad value", {"$ref": "#/components/schemas/Error"}),
    "401": _json("missing or wrong bearer token", {"$ref": "#/components/schemas/Error"}),
    "503": _json("no snapshot yet", {"$ref": "#/components/schemas/Error"}),
}

_SCHOOL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "school_id": {"type": "string"},
        "registered": {"type": "boolean"},
        "name": {"type": "string"},
        "province": {"type": "string"},
        "commune": {"type": "string"},
        "level": {"type": "string"},
        "lat": {"type": ["number", "null"]},
        "lon": {"type": ["number", "null"]},
        "students": {"type": ["integer", "null"]},
        "required_mbps": {"type": ["number", "null"]},
        "download_mbps": {"type": ["number", "null"]},
        "upload_mbps": {"type": ["number", "null"]},
        "latency_ms": {"type": ["number", "null"]},
        "tests_7d": {"type": "integer"},
        "connectivity": {"type": "string", "enum": list(CONNECTIVITY_CLASSES)},
        "uptime_pct": {"type": ["number", "null"]},
        "contracted_mbps": {"type": ["number", "null"]},
        "isp_compliant": {"type": ["boolean", "null"]},
        "monitoring": {"type": "string", "enum": list(MONITORING_STATES)},
        "last_report": {"type": ["string", "null"], "format": "date-time"},
        "devices_reporting": {"type": "integer"},
        "devices_clock_off": {
            "type": "integer",
            "description": "live devices whose agent's clock is far off",
        },
        "computers_usable": {"type": "integer"},
        "computers_required": {"type": ["integer", "null"]},
        "computers_gap": {"type": "integer"},
        "os_out_of_support": {"type": "integer"},
        "bandwidth_gap_mbps": {"type": "number"},
        "shortfalls": {"type": "array", "items": {"type": "string", "enum": list(SHORTFALL_KINDS)}},
        "priority": {"type": "number"},
        "speedtest": {"type": "string", "enum": list(SPEEDTEST_STATES),
                      "description": "no_tester: live agents, none designated to run speed "
                                     "tests; failing: tests ran, none succeeded"},
        "speed_testers": {"type": "integer"},
        "tests_failed_7d": {"type": "integer"},
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route."""
    ref = "#/components/schemas/"
    paths: dict[str, Any] = {
        "/api/v1/schools": {"get": {
            "summary": "Schools of the current snapshot, highest priority first",
            "security": _AUTH,
            "parameters": [*_FILTERS,
                _query("connectivity", "only this class",
                       {"type": "string", "enum": list(CONNECTIVITY_CLASSES)}),
                _query("monitoring", "only this status",
                       {"type": "string", "enum": list(MONITORING_STATES)}),
                _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000,
                                              "default": 100}),
                _query("offset", "schools to skip", {"type": "integer", "minimum": 0,
                                                     "default": 0})],
            "responses": {"200": _json("one page of schools", {"type": "object", "properties": {
                "generated_at": {"type": "string", "format": "date-time"},
                "total": {"type": "integer"}, "offset": {"type": "integer"},
                "limit": {"type": "integer"},
                "schools": {"type": "array", "items": {"$ref": ref + "School"}}}}), **_ERRORS},
        }},
        "/api/v1/schools/{school_id}": {"get": {
            "summary": "One school's status",
            "security": _AUTH,
            "parameters": [{"name": "school_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": _json("the school", {"$ref": ref + "School"}),
                          "404": _json("no such school", {"$ref": ref + "Error"}), **_ERRORS},
        }},
        "/api/v1/provinces": {"get": {
            "summary": "Counts and gap totals per province",
            "security": _AUTH,
            "responses": {"200": _json("province summaries", {"type": "object"}), **_ERRORS},
        }},
        "/api/v1/map": {"get": {
            "summary": "Compact points for the coverage map: school_id, lat, lon, classes",
            "security": _AUTH,
            "responses": {"200": _json("points", {"type": "object"}), **_ERRORS},
        }},
        "/api/v1/shortages": {"get": {
            "summary": "The shortage list, for budgets and procurement",
            "security": _AUTH,
            "parameters": [*_FILTERS, _query("format", "file format", {
                "type": "string", "enum": list(FORMATS), "default": "json"})],
            "responses": {"200": {"description": "the list as a file", "content": {
                f.media_type.split(";")[0]: {} for f in FORMATS.values()}},
                **_ERRORS},
        }},
        "/api/v1/rejects": {"get": {
            "summary": "The latest messages ingest refused, with the reason",
            "security": _AUTH,
            "parameters": [_query("limit", "how many", {"type": "integer", "minimum": 1,
                                                         "maximum": 1000, "default": 100})],
            "responses": {"200": _json("rejected messages", {"type": "object"}), **_ERRORS},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text format 0.0.4); bearer token if configured",
            "security": [{"metrics_bearer": []}],
            "parameters": [
                _query("province", "only this province's schools and totals (one shard)",
                       {"type": "string"}),
                _query("collector", "1: only the collector's own health and unregistered "
                       "schools", {"type": "string"})],
            "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}},
                          "401": _ERRORS["401"]},
        }},
        "/healthz": {"get": {"summary": "The process is alive",
                             "responses": {"200": _json("alive", {"type": "object"})}}},
        "/readyz": {"get": {
            "summary": "Store reachable, ingest connected, writer saving, first snapshot done",
            "responses": {"200": _json("ready", {"type": "object"}),
                          "503": _json("not ready; `checks` says which part, `why` the cause "
                                       "when known (e.g. the broker connection)",
                                       {"type": "object"})},
        }},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})}}},
        "/": {"get": {"summary": "The coverage page (map and province table; works offline)",
                      "responses": {"200": {"description": "HTML",
                                            "content": {"text/html": {}}}}}},
        "/speedtest/{path}": {"get": {
            "summary": "Self-hosted speed-test files (speedtest.net-compatible), see agent docs",
            "parameters": [{"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "test data"}}}},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edugap collector",
            "version": "1",
            "description": "Coverage, shortfalls and shortage lists of schools (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "metrics_bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "School": _SCHOOL,
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            },
        },
    }
