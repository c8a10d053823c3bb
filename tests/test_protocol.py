"""Wire protocol v1: round trips, rejections by reason, and the committed JSON Schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from edugap.protocol import messages as p
from edugap.protocol.schemagen import render

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "edugap/v1/79-001/dev-1/bandwidth"


def common() -> dict[str, object]:
    """The fields every report carries, for a fresh report of device 79-001/dev-1."""
    return dict(
        report_id=p.new_report_id(),
        school_id="79-001",
        device_id="dev-1",
        measured_at=datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC),
        agent_version="0.1.0",
    )


def bandwidth(**kw: object) -> p.Bandwidth:
    fields: dict[str, object] = dict(
        **common(),
        download_mbps=18.5,
        upload_mbps=4.25,
        latency_ms=31.0,
        bytes_used=25_000_000,
        backend="selfhosted",
        server="https://collector.example/speedtest",
    )
    fields.update(kw)
    return p.Bandwidth(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    report = bandwidth()
    assert p.decode(TOPIC, p.encode(report)) == report


def test_wire_form_names_schema_and_rfc3339_utc() -> None:
    data = p.to_builtins(bandwidth())
    assert data["schema"] == "edugap.bandwidth/1"
    assert data["measured_at"] == "2026-11-02T03:04:05Z"


def test_unknown_fields_are_accepted_within_v1() -> None:
    raw = p.encode(bandwidth()).replace(b'"backend"', b'"new_field":[1,2],"backend"')
    assert p.decode(TOPIC, raw).download_mbps == 18.5


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"x" * (p.MAX_PAYLOAD_BYTES + 1), "too_large"),
        ("edugap/v1/79-001/dev-1", b"{}", "bad_topic"),
        ("edugap/v1/79-001/dev-1/weather", b"{}", "bad_topic"),
        (TOPIC, b'{"schema":"edugap.bandwidth/1","server":"\xff"}', "not_utf8"),
        (TOPIC, b'{"schema":"edugap.bandwidth/1",', "bad_json"),
        (TOPIC, p.encode(bandwidth()).replace(b"18.5", b"NaN"), "bad_json"),
        (TOPIC, p.encode(bandwidth()).replace(b"bandwidth/1", b"bandwidth/9"), "unknown_schema"),
        (TOPIC, p.encode(bandwidth()).replace(b"18.5", b'"fast"'), "invalid"),
        (TOPIC, p.encode(bandwidth()).replace(b"18.5", b"-3"), "invalid"),
        (
            TOPIC,
            p.encode(bandwidth()).replace(b"2026-11-02T03:04:05Z", b"2026-11-02T03:04:05"),
            "invalid",
        ),
        ("edugap/v1/79-002/dev-1/bandwidth", p.encode(bandwidth()), "topic_mismatch"),
        ("edugap/v1/79-001/dev-1/heartbeat", p.encode(bandwidth()), "topic_mismatch"),
    ],
)
def test_bad_messages_are_rejected_with_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(topic, payload)
    assert info.value.reason == reason


def test_committed_json_schemas_match_the_code() -> None:
    rendered = render()
    committed = {
        f.name: f.read_text(encoding="utf-8") for f in (ROOT / "docs/schema").glob("*.json")
    }
    assert committed == rendered, (
        "protocol changed: run `python -m edugap.protocol.schemagen` and commit"
    )


def test_protocol_doc_names_every_field() -> None:
    doc = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    for cls in p.REPORT_TYPES.values():
        for name in cls.__struct_fields__:
            assert f"`{name}`" in doc, f"docs/protocol.md does not describe {cls.__name__}.{name}"


def _raw(report: p.Report, **changes: object) -> bytes:
    data = p.to_builtins(report)
    data.update(changes)
    return msgspec.json.encode(data)


def _inventory(**kw: object) -> p.Inventory:
    fields: dict[str, object] = dict(
        **common(),
        os=p.OsInfo(name="Windows", version="11"),
        cpu=p.CpuInfo(model="x", cores=4, threads=8),
        memory_mb=8192,
        disks=[p.Disk(mount="C:", total_gb=256.0, free_gb=10.0)],
        net=[],
        battery=None,
        boot_time=datetime(2026, 11, 2, 1, 0, tzinfo=UTC),
        machine_kind="desktop",
    )
    fields.update(kw)
    return p.Inventory(**fields)  # type: ignore[arg-type]


INVENTORY_TOPIC = "edugap/v1/79-001/dev-1/inventory"


@pytest.mark.parametrize(
    ("topic", "payload", "where"),
    [
        # year 0 in UTC: a time no backend can hold used to stop ingest
        (TOPIC, _raw(bandwidth(), measured_at="0001-01-01T00:00:00+01:00"), "measured_at"),
        (TOPIC, _raw(bandwidth(), measured_at="1899-12-31T23:59:59Z"), "measured_at"),
        (TOPIC, _raw(bandwidth(), measured_at="2100-01-01T00:00:00Z"), "measured_at"),
        (TOPIC, _raw(bandwidth(), measured_at="9999-12-31T23:59:59-01:00"), "measured_at"),
        (TOPIC, _raw(bandwidth(), download_mbps=1e308), "download_mbps"),
        (TOPIC, _raw(bandwidth(), latency_ms=p.MAX_MS + 1), "latency_ms"),
        (TOPIC, _raw(bandwidth(), bytes_used=2**63), "bytes_used"),
        (INVENTORY_TOPIC, _raw(_inventory(), memory_mb=10**30), "memory_mb"),
        (INVENTORY_TOPIC, _raw(_inventory(), boot_time="0001-01-01T00:00:00Z"), "boot_time"),
        (INVENTORY_TOPIC, _raw(_inventory(), cpu={"model": "x", "cores": 2**20, "threads": 1}),
         "cores"),
        (INVENTORY_TOPIC, _raw(_inventory(), disks=[{"mount": "/", "total_gb": 1e300,
                                                    "free_gb": 0}]), "total_gb"),
    ],
)  # fmt: skip
def test_values_outside_the_stated_bounds_are_invalid(
    topic: str, payload: bytes, where: str
) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(topic, payload)
    assert info.value.reason == "invalid"
    assert where in info.value.detail


def test_the_bounds_themselves_are_accepted() -> None:
    edge = _raw(
        bandwidth(),
        measured_at="1900-01-01T00:00:00Z",
        download_mbps=p.MAX_MBPS,
        latency_ms=p.MAX_MS,
        bytes_used=p.MAX_BYTES,
    )
    report = p.decode(TOPIC, edge)
    assert report.measured_at == p.EARLIEST_TIME and report.bytes_used == p.MAX_BYTES  # type: ignore[union-attr]
    late = _raw(_inventory(), memory_mb=p.MAX_MEMORY_MB, measured_at="2099-12-31T23:59:59Z")
    assert p.decode(INVENTORY_TOPIC, late).memory_mb == p.MAX_MEMORY_MB  # type: ignore[union-attr]


def test_the_json_schema_states_the_bounds() -> None:
    schemas = p.json_schemas()
    inventory = schemas["edugap.inventory.v1.json"]["$defs"]["Inventory"]["properties"]
    assert inventory["memory_mb"]["maximum"] == p.MAX_MEMORY_MB
    assert inventory["measured_at"]["formatMinimum"] == "1900-01-01T00:00:00Z"
    bandwidth_props = schemas["edugap.bandwidth.v1.json"]["$defs"]["Bandwidth"]["properties"]
    assert bandwidth_props["download_mbps"]["anyOf"][0]["maximum"] == p.MAX_MBPS


@pytest.mark.parametrize(
    "payload",
    [
        # the same known field twice: which one did the agent mean?
        p.encode(bandwidth()).replace(b'"download_mbps":18.5', b'"download_mbps":18.5,'
                                      b'"download_mbps":900.0'),
        # inside a nested object, and with whitespace the fast path never sees
        _raw(_inventory()).replace(b'"cores":4', b'"cores" : 4, "cores":64'),
        # in an unknown field too: the payload as a whole is ambiguous
        p.encode(bandwidth()).replace(b'"backend"', b'"x":{"a":1,"a":2},"backend"'),
    ],
    ids=["top-level", "nested", "unknown-field"],
)  # fmt: skip
def test_duplicate_keys_are_rejected(payload: bytes) -> None:
    topic = INVENTORY_TOPIC if b"inventory/1" in payload else TOPIC
    with pytest.raises(p.ProtocolError) as info:
        p.decode(topic, payload)
    assert info.value.reason == "duplicate_key"


def test_equal_values_in_different_objects_are_not_duplicates() -> None:
    raw = _raw(_inventory(), disks=[{"mount": "/", "total_gb": 1, "free_gb": 1}] * 3)
    assert len(p.decode(INVENTORY_TOPIC, raw).disks) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("depth", [50, 999, 1000, 10_000, 32_000])
def test_a_deeply_nested_unknown_field_is_ignored_like_any_unknown_field(depth: int) -> None:
    deep = b'"extra":' + b'[{"k":' * min(depth, 100) + b"[" * depth + b"]" * depth
    deep += b"}]" * min(depth, 100) + b","
    raw = p.encode(bandwidth()).replace(b'"backend"', deep + b'"backend"')
    assert p.decode(TOPIC, raw).download_mbps == 18.5  # type: ignore[union-attr]


def test_deep_nesting_where_a_known_field_belongs_is_invalid() -> None:
    raw = p.encode(bandwidth()).replace(b"18.5", b"[" * 5000 + b"]" * 5000)
    with pytest.raises(p.ProtocolError) as info:
        p.decode(TOPIC, raw)
    assert info.value.reason == "invalid"


def test_deep_and_unclosed_nesting_is_bad_json() -> None:
    raw = p.encode(bandwidth())[:-1] + b',"x":' + b"[" * 5000
    with pytest.raises(p.ProtocolError) as info:
        p.decode(TOPIC, raw)
    assert info.value.reason == "bad_json"


def test_cut_deep_keeps_strings_and_shallow_values() -> None:
    from edugap.protocol.jsonguard import cut_deep

    text = b'{"a":"[[[{","b":[[[1]]],"c":[2]}'
    assert cut_deep(text, max_depth=2) == b'{"a":"[[[{","b":[null],"c":[2]}'
    assert cut_deep(text, max_depth=32) == text
