"""Wire protocol v1: MQTT topics and the typed report messages shared by agent and collector.

This module imports only msgspec and the standard library, so the collector can use it without
the agent's probe dependencies (psutil, speedtest-cli).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

from edugap.protocol.jsonguard import cut_deep, duplicate_key

PROTOCOL_VERSION: Final = 1
TOPIC_ROOT: Final = "edugap/v1"
#: Every report payload is at most this many bytes of UTF-8 JSON.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
KINDS: Final = ("inventory", "bandwidth", "heartbeat", "status")
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)
# Every well-formed topic in one match (a subset of what parse_topic's checks accept): the
# collector parses one topic per report, and this is several times cheaper than the checks.
_TOPIC_RE = re.compile(
    rf"{re.escape(TOPIC_ROOT)}/([A-Za-z0-9_-]{{1,64}})/([A-Za-z0-9_-]{{1,64}})/({'|'.join(KINDS)})"
)

Kind = Literal["inventory", "bandwidth", "heartbeat", "status"]
Id = Annotated[str, Meta(pattern=ID_PATTERN, description="letters, digits, '-' and '_'")]

# --- bounds at the door ------------------------------------------------------------------
# Every number and time a report carries has a stated range (in the JSON Schema too), so no
# value that passes decode() can overflow a store column or a sum, or fail to convert. Each
# maximum is far above anything real and says why in docs/protocol.md.

#: Earliest and latest time a report may carry: any clock, however wrong, that a computer can
#: report, and a range every store backend and Python's datetime hold (year 0 in UTC does not).
#: Within it the collector still clamps implausible times to the receive time.
EARLIEST_TIME: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(2100, 1, 1, tzinfo=UTC)
MAX_MBPS: Final = 1_000_000.0  # 1 Tbit/s: above any school link or network interface
MAX_MS: Final = 600_000.0  # 10 minutes: longer than any probe waits for an answer
MAX_BYTES: Final = 10**12  # 1 TB moved by one speed test (a 10 Gbit/s link moves ~40 GB)
MAX_MEMORY_MB: Final = 2**25  # 32 TiB of RAM
MAX_CORES: Final = 2**16  # CPU cores or threads of one computer
MAX_GB: Final = 1_000_000.0  # 1 PB: one disk's size or free space
MAX_COUNT: Final = 10**9  # checks, outbox depth, dropped reports in one report
MAX_PERIOD_S: Final = 31 * 86400  # one heartbeat covers at most a month

UtcTime = Annotated[
    datetime,
    Meta(
        tz=True,
        description="RFC 3339 time, UTC, from 1900-01-01 (inclusive) to 2100-01-01 (exclusive)",
        extra_json_schema={
            "formatMinimum": "1900-01-01T00:00:00Z",
            "formatExclusiveMaximum": "2100-01-01T00:00:00Z",
        },
    ),
]
Mbps = Annotated[float, Meta(ge=0, le=MAX_MBPS)]
Millis = Annotated[float, Meta(ge=0, le=MAX_MS)]
Gigabytes = Annotated[float, Meta(ge=0, le=MAX_GB)]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Cores = Annotated[int, Meta(ge=0, le=MAX_CORES)]
Percent = Annotated[float, Meta(ge=0, le=100)]
ShortStr = Annotated[str, Meta(max_length=256)]


class ProtocolError(ValueError):
    """A message that does not follow protocol v1; `reason` names the rule it broke."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- pieces of reports -------------------------------------------------------------------


class OsInfo(Struct, forbid_unknown_fields=False):
    """Operating system name and version, and whether its vendor still supports it."""

    name: ShortStr
    version: ShortStr
    end_of_support: str | None = None  # ISO date from the agent's lifecycle table, when known
    out_of_support: bool | None = None  # the agent's hint; the collector decides from its table


class CpuInfo(Struct):
    """Processor model and counts."""

    model: ShortStr
    cores: Cores
    threads: Cores


class Disk(Struct):
    """One mounted fixed disk."""

    mount: ShortStr
    total_gb: Gigabytes
    free_gb: Gigabytes


class NetInterface(Struct):
    """One network interface; no MAC address travels."""

    name: ShortStr
    kind: Literal["wired", "wifi", "other"]
    speed_mbps: Mbps
    up: bool


class Battery(Struct):
    """Battery charge and, where the OS gives it, health (full charge over design capacity)."""

    percent: Percent
    health_pct: Annotated[float, Meta(ge=0, le=200)] | None = None


class TargetCheck(Struct):
    """Availability of one target over a heartbeat period."""

    target: ShortStr
    checks: Count
    ok: Count
    latency_ms: Millis | None = None


# --- reports -----------------------------------------------------------------------------


class Report(Struct, kw_only=True, tag_field="schema"):
    """Fields every report carries."""

    report_id: Annotated[str, Meta(min_length=8, max_length=64)]
    school_id: Id
    device_id: Id
    measured_at: UtcTime
    agent_version: ShortStr

    @property
    def kind(self) -> Kind:
        raise NotImplementedError


class Inventory(Report, kw_only=True, tag="edugap.inventory/1"):
    """What one computer is: hardware, OS, disks, network, battery."""

    os: OsInfo
    cpu: CpuInfo
    memory_mb: Annotated[int, Meta(ge=0, le=MAX_MEMORY_MB)]
    disks: Annotated[list[Disk], Meta(max_length=64)]
    net: Annotated[list[NetInterface], Meta(max_length=64)]
    battery: Battery | None
    boot_time: UtcTime | None
    machine_kind: Literal["desktop", "laptop", "server", "unknown"]
    bios_date: str | None = None
    chassis_type: ShortStr | None = None
    system_disk_free_pct: Percent | None = None
    # sha256 over hardware identifiers, for duplicate detection only; never the device id
    hardware_hash: ShortStr | None = None
    # whether this computer was designated to run the school's speed tests (bandwidth.role);
    # None from agents older than the field
    speed_tester: bool | None = None

    @property
    def kind(self) -> Kind:
        return "inventory"


class Bandwidth(Report, kw_only=True, tag="edugap.bandwidth/1"):
    """One speed test: its speeds, or the error that stopped it, or why it was skipped."""

    download_mbps: Mbps | None = None
    upload_mbps: Mbps | None = None
    latency_ms: Millis | None = None
    jitter_ms: Millis | None = None
    bytes_used: Annotated[int, Meta(ge=0, le=MAX_BYTES)] = 0
    backend: ShortStr
    server: ShortStr
    error: Annotated[str, Meta(max_length=2048)] | None = None
    skipped: bool = False
    # the test stopped before its full length to stay within the daily data budget; the
    # speeds are from the part that ran, and `note` says what was cut
    partial: bool = False
    note: Annotated[str, Meta(max_length=512)] | None = None
    # how busy the school's link was while the test ran (traffic probe), in Mbps
    link_rx_mbps: Mbps | None = None
    link_tx_mbps: Mbps | None = None

    @property
    def kind(self) -> Kind:
        return "bandwidth"

    @property
    def succeeded(self) -> bool:
        return self.error is None and not self.skipped and self.download_mbps is not None


class Heartbeat(Report, kw_only=True, tag="edugap.heartbeat/1"):
    """Availability probe summary and outbox health since the previous heartbeat."""

    latency_ms: Millis | None
    reachable: bool
    period_seconds: Annotated[int, Meta(ge=0, le=MAX_PERIOD_S)] = 0
    checks: Count = 0
    checks_ok: Count = 0
    loss_pct: Percent | None = None
    targets: Annotated[list[TargetCheck], Meta(max_length=32)] = []
    queue_depth: Count
    dropped_reports: Count
    link_rx_mbps: Mbps | None = None
    link_tx_mbps: Mbps | None = None

    @property
    def kind(self) -> Kind:
        return "heartbeat"


class Status(Report, kw_only=True, tag="edugap.status/1"):
    """Retained presence: online at connect, offline by the last will."""

    state: Literal["online", "offline"]

    @property
    def kind(self) -> Kind:
        return "status"


AnyReport = Inventory | Bandwidth | Heartbeat | Status
REPORT_TYPES: Final[dict[str, type[Report]]] = {
    "inventory": Inventory,
    "bandwidth": Bandwidth,
    "heartbeat": Heartbeat,
    "status": Status,
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyReport)


# --- helpers -----------------------------------------------------------------------------


def new_report_id() -> str:
    """A fresh report id (UUID4, hex with dashes)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


def valid_id(value: str) -> bool:
    """True when `value` may be a school or device id (a single topic level)."""
    return bool(_ID_RE.match(value))


def topic_for(school_id: str, device_id: str, kind: str) -> str:
    """The topic a report of `kind` from this device is published on."""
    return f"{TOPIC_ROOT}/{school_id}/{device_id}/{kind}"


def echo_topic(school_id: str, device_id: str) -> str:
    """Where an agent proves delivery: a message it publishes here comes back to its own
    subscription only when the broker accepted it. One level deeper than a report topic, so a
    collector's `edugap/v1/+/+/+` never receives it (the broker's ACL must let the school read
    it: `pattern read edugap/v1/%u/+/echo/#`, as deploy/mosquitto/acl does)."""
    return f"{TOPIC_ROOT}/{school_id}/{device_id}/echo/round-trip"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split a v1 topic into (school_id, device_id, kind) or raise ProtocolError('bad_topic')."""
    fast = _TOPIC_RE.fullmatch(topic)
    if fast is not None:
        return fast[1], fast[2], fast[3]
    # the step-by-step checks, which also say what is wrong
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ProtocolError(
            "bad_topic", f"topic {topic!r} is not {TOPIC_ROOT}/<school>/<device>/<kind>"
        )
    _, _, school_id, device_id, kind = parts
    if kind not in KINDS:
        raise ProtocolError("bad_topic", f"unknown kind {kind!r} in topic {topic!r}")
    if not valid_id(school_id) or not valid_id(device_id):
        raise ProtocolError("bad_topic", f"bad school or device level in topic {topic!r}")
    return school_id, device_id, kind


def encode(report: Report) -> bytes:
    """Serialise a report to its wire form (compact UTF-8 JSON with the `schema` field)."""
    return _encoder.encode(report)


def to_builtins(report: Report) -> dict[str, Any]:
    """The report as plain JSON-compatible Python objects."""
    value = msgspec.to_builtins(report)
    assert isinstance(value, dict)
    return value


def decode(topic: str, payload: bytes) -> AnyReport:
    """Validate one MQTT message and return its report, or raise ProtocolError with a reason.

    Reasons: too_large, bad_topic, not_utf8, bad_json, unknown_schema, invalid, duplicate_key,
    topic_mismatch.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    school_id, device_id, kind = parse_topic(topic)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError("not_utf8", str(e)) from None
    try:
        report = _decode_json(payload)
    except RecursionError:
        # nested deeper than msgspec recurses: only an unknown field can be (and is ignored)
        payload = cut_deep(payload)
        text = payload.decode("utf-8")
        try:
            report = _decode_json(payload)
        except RecursionError:
            raise ProtocolError("bad_json", "nested too deep") from None
    # The encoder writes each field once, so a payload that is exactly the report's own
    # encoding (what an agent of this version sends) has no duplicate key: a compare costs a
    # tenth of the scan, which other payloads (other versions, unknown fields) get.
    if _encoder.encode(report) != payload:
        duplicate = duplicate_key(text)
        if duplicate is not None:
            raise ProtocolError("duplicate_key", f"key {duplicate!r} appears twice in one object")
    if report.kind != kind:
        raise ProtocolError("topic_mismatch", f"schema {report.kind!r} on a {kind!r} topic")
    if report.school_id != school_id or report.device_id != device_id:
        raise ProtocolError(
            "topic_mismatch",
            f"payload {report.school_id}/{report.device_id} on topic {school_id}/{device_id}",
        )
    _check_time("measured_at", report.measured_at)
    if isinstance(report, Inventory) and report.boot_time is not None:
        _check_time("boot_time", report.boot_time)
    return report


def _check_time(name: str, value: datetime) -> None:
    # msgspec states no range for times; this is the range the JSON Schema states
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ProtocolError(
            "invalid",
            f"{name} {value.isoformat()} is outside {EARLIEST_TIME.isoformat()} to "
            f"{LATEST_TIME.isoformat()} - at `$.{name}`",
        )


def _decode_json(payload: bytes) -> AnyReport:
    try:
        report: AnyReport = _decoder.decode(payload)
    except msgspec.ValidationError as e:
        text = str(e)
        if "`$.schema`" in text or "missing required field `schema`" in text.lower():
            raise ProtocolError("unknown_schema", text) from None
        raise ProtocolError("invalid", text) from None
    except msgspec.DecodeError as e:
        raise ProtocolError("bad_json", str(e)) from None
    return report


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema documents for each report kind, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for kind, cls in REPORT_TYPES.items():
        (schema,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
        doc: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://edugap.example/schema/edugap.{kind}.v1.json",
            "title": f"edugap.{kind}/1",
            **schema,
            "$defs": components,
        }
        out[f"edugap.{kind}.v1.json"] = doc
    return out
