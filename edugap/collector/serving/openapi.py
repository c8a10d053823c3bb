"""The OpenAPI 3 document of the collector's HTTP API (served at /openapi.json).

Written by hand rather than generated, so it says what a client may rely on: every parameter
with its bounds, every status a route answers, every response's shape. Authentication is
declared only where a token is configured, as the API behaves. A test checks that every route
of the app is described here, and schemathesis runs against the served document with and
without tokens.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edugap.collector.export import COLUMNS, DIALECTS, FORMATS, KIND_ANY, LANGUAGES
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    EVIDENCE,
    MONITORING_STATES,
    NEEDS,
    SHORTFALL_KINDS,
    SPEEDTEST_STATES,
)

MAX_PAGE = 1000
MAX_OFFSET = 10**9
REF = "#/components/schemas/"


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


def _enum(values: tuple[str, ...] | list[str], default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return schema


_PLACE = "accents, case and the prefix are ignored; an unknown place is 404 with the closest names"
_FILTERS = [
    _query("province", f"only schools of this province ({_PLACE})", {"type": "string"}),
    _query("commune", f"only schools of this commune ({_PLACE})", {"type": "string"}),
    _query("level", "only schools of this level (case ignored; an unknown level is 404)",
           {"type": "string"}),
    _query("kind", "only schools with this shortfall ('any': with at least one)",
           _enum([*SHORTFALL_KINDS, KIND_ANY])),
    _query("need", "only one list: measured (budget), assumed (survey or enrol), none",
           _enum(NEEDS)),
]  # fmt: skip
# what /api/v1/schools, /api/v1/map and /api/v1/shortages accept (the coverage page's filters)
_ALL_FILTERS = [
    *_FILTERS,
    _query("connectivity", "only this class", _enum(CONNECTIVITY_CLASSES)),
    _query("monitoring", "only this status", _enum(MONITORING_STATES)),
]  # fmt: skip


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": REF + "Error"})


_BAD = {"400": _error("a query parameter has a bad value (named in the message)")}
_NOT_YET = {"503": _error("no snapshot yet: the first evaluation has not finished")}
_UNKNOWN_PLACE = {"404": _error("a place filter names no known place (closest names given)")}

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
_SCHOOL_PROPERTIES: dict[str, dict[str, Any]] = {
    "school_id": {"type": "string"},
    "name": {"type": "string"},
    "province": {"type": "string", "description": "'' when unregistered"},
    "commune": {"type": "string"},
    "level": {"type": "string"},
    "students": _INT_OR_NULL,
    "lat": _NUMBER_OR_NULL,
    "lon": _NUMBER_OR_NULL,
    "registered": {"type": "boolean"},
    "connectivity": _enum(CONNECTIVITY_CLASSES),
    "download_mbps": _NUMBER_OR_NULL,
    "upload_mbps": _NUMBER_OR_NULL,
    "latency_ms": _NUMBER_OR_NULL,
    "tests_7d": _COUNT,
    "required_mbps": _NUMBER_OR_NULL,
    "bandwidth_gap_mbps": {"type": "number", "minimum": 0},
    "bandwidth_evidence": _enum(EVIDENCE),
    "uptime_pct": _NUMBER_OR_NULL,
    "availability_evidence": _enum(EVIDENCE),
    "contracted_mbps": _NUMBER_OR_NULL,
    "isp_compliant": {"type": ["boolean", "null"]},
    "monitoring": _enum(MONITORING_STATES),
    "last_report": {"type": ["string", "null"], "format": "date-time"},
    "devices_reporting": _COUNT,
    "devices_clock_off": {**_COUNT, "description": "live devices whose agent's clock is far off"},
    "computers_usable": _COUNT,
    "computers_required": _INT_OR_NULL,
    "computers_gap": _COUNT,
    "computers_evidence": _enum(EVIDENCE),
    "os_out_of_support": _COUNT,
    "shortfalls": {"type": "array", "items": _enum(SHORTFALL_KINDS)},
    "need": _enum(NEEDS),
    "priority": {"type": "number", "minimum": 0},
    "priority_assumed": {"type": "number", "minimum": 0},
    "speedtest": {"type": "string", "enum": list(SPEEDTEST_STATES),
                  "description": "no_tester: live agents but none designated to run speed "
                                 "tests; failing: tests ran, none succeeded"},
    "speed_testers": _COUNT,
    "tests_failed_7d": _COUNT,
}
assert tuple(_SCHOOL_PROPERTIES) == COLUMNS  # the API's school is a row of the JSON export


def _counts(keys: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: _COUNT for k in keys},
            "additionalProperties": False}  # fmt: skip


_PROVINCE: dict[str, Any] = {
    "type": "object",
    "required": ["province", "schools", "bandwidth_gap_mbps", "computers_gap"],
    "properties": {
        "province": {"type": "string"},
        "commune": {"type": ["string", "null"]},
        "schools": _COUNT,
        "by_connectivity": _counts(CONNECTIVITY_CLASSES),
        "by_monitoring": _counts(MONITORING_STATES),
        "by_need": _counts(NEEDS),
        "by_speedtest": _counts(SPEEDTEST_STATES),
        "shortfalls": _counts(SHORTFALL_KINDS),
        "bandwidth_gap_mbps": {"type": "number", "minimum": 0},
        "bandwidth_gap_measured_mbps": {"type": "number", "minimum": 0},
        "bandwidth_gap_assumed_mbps": {"type": "number", "minimum": 0},
        "computers_gap": _COUNT,
        "computers_gap_measured": _COUNT,
        "computers_gap_assumed": _COUNT,
        "computers_usable": _COUNT,
        "computers_required": _COUNT,
        "os_out_of_support": _COUNT,
    },
}
_GENERATED = {"type": "string", "format": "date-time"}


def _get(summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
         security: list[dict[str, list[str]]] | None = None) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if security is not None:
        operation["security"] = security
    return {"get": operation}


@cache
def openapi_document(api_token: bool = False, metrics_token: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route; `api_token` and `metrics_token` say whether
    those tokens are configured (without one, the routes are open and the document says so)."""
    unauthorized = {"401": _error("missing or wrong bearer token")}
    api_auth: list[dict[str, list[str]]] | None = [{"bearer": []}] if api_token else None
    api_401 = unauthorized if api_token else {}
    schools_page = {"type": "object", "required": ["generated_at", "total", "schools"],
                    "properties": {
        "generated_at": _GENERATED, "total": _COUNT,
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
        "schools": {"type": "array", "items": {"$ref": REF + "School"}}}}  # fmt: skip
    reject = {"type": "object", "properties": {
        "received_at": _GENERATED, "topic": {"type": "string"}, "reason": {"type": "string"},
        "detail": {"type": "string"}, "payload_excerpt": {"type": "string"}}}  # fmt: skip
    paths: dict[str, Any] = {
        "/api/v1/schools": _get(
            "Schools of the current snapshot, measured need first",
            {"200": _json("one page of schools", schools_page), **_BAD, **_UNKNOWN_PLACE,
             **api_401, **_NOT_YET},
            [*_ALL_FILTERS,
             _query("limit", "page size", {"type": "integer", "minimum": 1,
                                           "maximum": MAX_PAGE, "default": 100}),
             _query("offset", "schools to skip", {"type": "integer", "minimum": 0,
                                                  "maximum": MAX_OFFSET, "default": 0})],
            api_auth),
        "/api/v1/schools/{school_id}": _get(
            "One school's status",
            {"200": _json("the school", {"$ref": REF + "School"}),
             "404": _error("no such school in the current snapshot"), **api_401, **_NOT_YET},
            [{"name": "school_id", "in": "path", "required": True,
              "schema": {"type": "string"}}],
            api_auth),
        "/api/v1/provinces": _get(
            "Counts and gap totals per province, measured and assumed apart",
            {"200": _json("province summaries", {"type": "object", "properties": {
                "generated_at": _GENERATED,
                "provinces": {"type": "array", "items": {"$ref": REF + "Province"}}}}),
             **api_401, **_NOT_YET},
            None, api_auth),
        "/api/v1/map": _get(
            "The filtered schools in compact columns, for the coverage map (docs/api.md)",
            {"200": _json("columns", {"type": "object"}), **_BAD, **_UNKNOWN_PLACE, **api_401,
             **_NOT_YET},
            _ALL_FILTERS, api_auth),
        "/api/v1/shortages": _get(
            "The shortage list, for budgets and procurement, as a file named after its filters",
            {"200": {"description": "the list as a file (Content-Disposition: attachment)",
                     "content": {f.media_type: {} for f in FORMATS.values()}},
             **_BAD, **_UNKNOWN_PLACE, **api_401, **_NOT_YET},
            [*_ALL_FILTERS,
             _query("format", "file format", _enum(list(FORMATS), "json")),
             _query("lang", "XLSX headers and sheet names", _enum(LANGUAGES, "vi")),
             _query("dialect", "CSV: standard (',' '.') or excel-vn (';' ',')",
                    _enum(DIALECTS, "standard"))],
            api_auth),
        "/api/v1/rejects": _get(
            "The latest messages ingest refused, with the reason",
            {"200": _json("rejected messages", {"type": "object", "properties": {
                "rejects": {"type": "array", "items": reject}}}),
             **_BAD, **api_401, "503": _error("the store cannot be read")},
            [_query("limit", "how many", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                          "default": 100})],
            api_auth),
        "/metrics": _get(
            "Prometheus metrics (text format 0.0.4)",
            {"200": {"description": "metrics", "content": {"text/plain": {}}},
             "404": _error("no province has that name; the message names them"),
             **({"401": unauthorized["401"]} if metrics_token else {})},
            [_query("province", "only this province's schools and totals (one shard; case, "
                    "accents and the prefix are ignored)", {"type": "string"}),
             _query("collector", "1: only the collector's own health and unregistered schools",
                    {"type": "string"})],
            [{"metrics_bearer": []}] if metrics_token else None),
        "/metrics/targets": _get(
            "Prometheus http_sd targets: one per province shard with schools",
            {"200": _json("target groups", {"type": "array"}),
             **({"401": unauthorized["401"]} if metrics_token else {}), **_NOT_YET},
            None, [{"metrics_bearer": []}] if metrics_token else None),
        "/healthz": _get("The process is alive",
                         {"200": _json("alive", {"type": "object", "properties": {
                             "status": {"type": "string", "enum": ["alive"]}}})}),
        "/readyz": _get(
            "Store reachable, ingest connected, writer saving, first snapshot done",
            {"200": _json("ready", {"$ref": REF + "Readiness"}),
             "503": _json("not ready; `checks` says which part", {"$ref": REF + "Readiness"})}),
        "/openapi.json": _get("This document",
                              {"200": _json("OpenAPI 3.1", {"type": "object"})}),
        "/": _get("The coverage page (map and province table; works offline)",
                  {"200": {"description": "HTML", "content": {"text/html": {}}}}),
        "/outlines/{which}.json": _get(
            "What the page's map draws: the country (which=country) or the operator's province "
            "and commune outlines (which=areas), as GeoJSON",
            {"200": {"description": "GeoJSON FeatureCollection",
                     "content": {"application/geo+json": {}}},
             "404": {"description": "neither country nor areas"}},
            [{"name": "which", "in": "path", "required": True,
              "schema": {"type": "string", "enum": ["country", "areas"]}}]),
        "/static/{path}": _get(
            "The coverage page's scripts and styles",
            {"200": {"description": "the file"}, "404": {"description": "no such file"}},
            [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}]),
        "/speedtest/{path}": _get(
            "Self-hosted speed-test files (speedtest.net-compatible), see agent docs",
            {"200": {"description": "test data"},
             "404": {"description": "no such file, or a download over the size limit"}},
            [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
              "example": "latency.txt"}]),
    }  # fmt: skip
    schemes: dict[str, Any] = {}
    if api_token:
        schemes["bearer"] = {"type": "http", "scheme": "bearer",
                             "description": "http.api_token"}  # fmt: skip
    if metrics_token:
        schemes["metrics_bearer"] = {"type": "http", "scheme": "bearer",
                                     "description": "http.metrics_token"}  # fmt: skip
    components: dict[str, Any] = {
        "schemas": {
            "School": {"type": "object", "required": list(COLUMNS),
                       "properties": _SCHOOL_PROPERTIES},
            "Province": _PROVINCE,
            "Readiness": {"type": "object", "required": ["ready", "checks"], "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
        },
    }  # fmt: skip
    if schemes:
        components["securitySchemes"] = schemes
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edugap collector",
            "version": "1",
            "description": "Coverage, shortfalls and shortage lists of schools (docs/api.md). "
            "Without http.api_token (http.metrics_token) the API (/metrics) is open; with one, "
            "it needs `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": components,
    }
