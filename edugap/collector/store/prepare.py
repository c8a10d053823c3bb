"""Backend-neutral preparation of a batch: duplicate ids, and the rows each new report makes.

Both backends do the same thing with a batch: find the ids not seen before, then write the
rows those reports make. Folding in Python first (one last_seen per device, one sum per school
and hour) keeps each upsert to one row per key, which PostgreSQL requires and makes SQLite fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from edugap.collector.model import Received
from edugap.protocol.messages import (
    EARLIEST_TIME,
    LATEST_TIME,
    Bandwidth,
    Heartbeat,
    Inventory,
    encode,
)

DeviceKey = tuple[str, str]  # (school_id, device_id)


def clean(text: str | None) -> str | None:
    """Text safe for every backend: PostgreSQL refuses NUL characters, which JSON may carry."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


#: Integers from reports are capped here, a second net behind the protocol's bounds (which
#: are far lower): every backend column holds it, so no value can fail a whole batch.
MAX_INT = 2**53
#: Sums the store keeps (heartbeats and checks per school and hour) saturate here, in Python
#: and in SQL: two of them still add up below 2^63, and so do the hours of years of windows.
MAX_SUM = 2**48


def bounded(n: int | None) -> int | None:
    """`n` capped at MAX_INT, so an absurd value cannot make a whole batch fail to write."""
    return n if n is None or n <= MAX_INT else MAX_INT


_EARLIEST = EARLIEST_TIME.timestamp()
_LATEST = LATEST_TIME.timestamp()

ReportKey = tuple[str, str]  # (school_id, report_id): report ids are unique per school


def first_occurrences(batch: list[Received]) -> tuple[list[int], list[ReportKey]]:
    """Indexes and (school, id) keys of the first item of each report; later repeats are
    duplicates. A report is its school, id and measured time as sent, as the stores key it
    (a redelivery repeats all three), so the same id with another time is another report here
    too. Ids are cleaned (see `clean`) as every backend stores them."""
    seen: set[tuple[str, str, datetime]] = set()
    indexes: list[int] = []
    keys: list[ReportKey] = []
    for i, item in enumerate(batch):
        report = item.report
        rid = report.report_id
        key = (report.school_id, rid if "\x00" not in rid else rid.replace("\x00", "\ufffd"))
        report_key = (*key, item.measured_as_sent)
        if report_key in seen:
            continue
        seen.add(report_key)
        indexes.append(i)
        keys.append(key)
    return indexes, keys


def legacy_known(keys: list[ReportKey], found: list[tuple[str | None, str]]) -> set[ReportKey]:
    """The keys among `keys` that the tables of earlier versions hold: `found` are their rows
    for the batch's ids, (school, id) from report_ids_v2, (None, id) from report_ids_v1, whose
    ids had no school (any school's report with that id is a duplicate)."""
    pairs = {(s, r) for s, r in found if s is not None}
    bare = {r for s, r in found if s is None}
    return {key for key in keys if key in pairs or key[1] in bare}


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

    # per device, the newest evidence about its agent's clock: (offset s, off, received at)
    clocks: dict[DeviceKey, tuple[float, bool, float]] = field(default_factory=dict)

    def sorted_hours(self) -> list[tuple[str, int, HourSum]]:
        # A fixed key order keeps concurrent writers (two collectors) from deadlocking.
        return [(s, h, v) for (s, h), v in sorted(self.hours.items())]


def prepare(new: list[Received]) -> Prepared:
    """Fold the newly stored reports of a batch into rows.

    last_seen and last_report are when the collector received a report (`Received.seen`):
    an agent's clock cannot make a reporting school look silent, and an old report from an
    outbox is fresh evidence that its device is alive. Speed tests and heartbeat hours keep
    measured_at (clamped by ingest when implausible). A heartbeat without availability checks
    counts as one check, ok when `reachable`. Sums saturate at MAX_SUM.
    """
    out = Prepared()
    last_seen = out.last_seen
    last_report = out.last_report
    seen_dt: datetime | None = None
    seen = 0.0
    for item in new:
        report = item.report
        key = (report.school_id, report.device_id)
        when = item.received_at if item.seen_at is None else item.seen_at  # item.seen, inline
        if when is not seen_dt:  # one receive time per batch: convert it once
            seen_dt = when
            seen = when.timestamp()
        if seen > last_seen.get(key, -1e18):
            last_seen[key] = seen
        if seen > last_report.get(report.school_id, -1e18):
            last_report[report.school_id] = seen
        if item.clock_offset_s is not None:
            received = item.received_at.timestamp()
            clock = out.clocks.get(key)
            if clock is None or received >= clock[2]:
                out.clocks[key] = (item.clock_offset_s, item.clock_off, received)
        at = report.measured_at.timestamp()
        if not _EARLIEST <= at < _LATEST:
            # a second net behind decode(): a time the reads could not turn back into a
            # datetime would make every snapshot fail (year 0 in UTC did, on SQLite)
            raise ValueError(f"measured_at {report.measured_at.isoformat()} is out of range")
        if isinstance(report, Heartbeat):
            hour_key = (report.school_id, int(at // 3600) * 3600)
            hour = out.hours.get(hour_key)
            if hour is None:
                hour = out.hours[hour_key] = HourSum()
            checks = report.checks
            if checks:
                ok = report.checks_ok
                ok = checks if ok > checks else ok
            else:
                checks, ok = 1, int(report.reachable)
            hour.heartbeats += 1
            hour.checks += checks
            hour.checks_ok += ok
            # heartbeats <= checks and checks_ok <= checks, so checks is the one to watch
            if hour.checks > MAX_SUM:
                hour.checks = MAX_SUM
                hour.checks_ok = min(hour.checks_ok, MAX_SUM)
                hour.heartbeats = min(hour.heartbeats, MAX_SUM)
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
