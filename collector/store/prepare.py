"""Backend-neutral preparation of a batch: duplicate ids, and the rows each new report makes.

Both backends do the same thing with a batch: find the ids not seen before, then write the
rows those reports make. Folding in Python first (one last_seen per device, one sum per school
and hour) keeps each upsert to one row per key, which PostgreSQL requires and makes SQLite fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.protocol import Bandwidth, Heartbeat, Inventory, encode
from collector.model import Received

DeviceKey = tuple[str, str]  # (school_id, device_id)


def clean(text: str | None) -> str | None:
    """Text safe for every backend: PostgreSQL refuses NUL characters, which JSON may carry."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


#: Integers from reports are capped here: every backend column holds it, and sums of a few
#: thousand of them still fit in 64 bits (the protocol only says "integer >= 0").
MAX_INT = 2**53


def bounded(n: int | None) -> int | None:
    """`n` capped at MAX_INT, so an absurd value cannot make a whole batch fail to write."""
    return n if n is None or n <= MAX_INT else MAX_INT


def first_occurrences(batch: list[Received]) -> tuple[list[int], list[str]]:
    """Indexes and ids of the first item with each report_id; later repeats are duplicates."""
    seen: set[str] = set()
    indexes: list[int] = []
    ids: list[str] = []
    for i, item in enumerate(batch):
        rid = item.report.report_id
        if rid in seen:
            continue
        seen.add(rid)
        indexes.append(i)
        ids.append(rid)
    return indexes, ids


@dataclass
class HourSum:
    """Running sum of one school's heartbeats in one hour."""

    heartbeats: int = 0
    checks: int = 0
    checks_ok: int = 0


@dataclass
class Prepared:
    """The rows that the new reports of one batch add or change; times in epoch seconds.

    Epoch floats rather than datetimes: comparing and bucketing them is several times
    cheaper, and this runs once per report at tens of thousands of reports per second.
    """

    bandwidth: list[tuple[Bandwidth, float]] = field(default_factory=list)
    inventories: dict[DeviceKey, tuple[Inventory, float]] = field(default_factory=dict)
    last_seen: dict[DeviceKey, float] = field(default_factory=dict)
    hours: dict[tuple[str, int], HourSum] = field(default_factory=dict)  # hour: epoch seconds
    last_report: dict[str, float] = field(default_factory=dict)

    def sorted_hours(self) -> list[tuple[str, int, HourSum]]:
        # A fixed key order keeps concurrent writers (two collectors) from deadlocking.
        return [(s, h, v) for (s, h), v in sorted(self.hours.items())]


def prepare(new: list[Received]) -> Prepared:
    """Fold the newly stored reports of a batch into rows.

    last_seen and last_report use measured_at (already clamped by ingest when in the future),
    so an old report delivered late from an agent's outbox does not move them backwards.
    A heartbeat without availability checks counts as one check, ok when `reachable`.
    """
    out = Prepared()
    last_seen = out.last_seen
    last_report = out.last_report
    for item in new:
        report = item.report
        key = (report.school_id, report.device_id)
        at = report.measured_at.timestamp()
        if at > last_seen.get(key, -1e18):
            last_seen[key] = at
        if at > last_report.get(report.school_id, -1e18):
            last_report[report.school_id] = at
        if isinstance(report, Heartbeat):
            hour_key = (report.school_id, int(at // 3600) * 3600)
            hour = out.hours.get(hour_key)
            if hour is None:
                hour = out.hours[hour_key] = HourSum()
            hour.heartbeats += 1
            if report.checks:
                checks = min(report.checks, MAX_INT)
                hour.checks += checks
                hour.checks_ok += min(report.checks_ok, checks)
            else:
                hour.checks += 1
                hour.checks_ok += int(report.reachable)
        elif isinstance(report, Bandwidth):
            out.bandwidth.append((report, at))
        elif isinstance(report, Inventory):
            current = out.inventories.get(key)
            if current is None or at >= current[1]:
                out.inventories[key] = (report, at)
    return out


def to_datetime(ts: float) -> datetime:
    """Epoch seconds back to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def inventory_json(report: Inventory) -> str:
    """The whole inventory as JSON text, kept for later questions the columns do not answer."""
    return encode(report).decode("utf-8")
