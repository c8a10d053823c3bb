"""Shared types of the collector: registry rows, stored facts, the Store seam and the snapshot.

Ingest writes through `Store`; the policy reads facts from `Store` and computes a `Snapshot`;
metrics, the HTTP API and the exports read only the `Snapshot`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from edugap.protocol.messages import AnyReport

Connectivity = Literal["good", "moderate", "bad", "unknown"]
Monitoring = Literal["live", "at_risk", "drop_off", "never"]
CONNECTIVITY_CLASSES: tuple[Connectivity, ...] = ("good", "moderate", "bad", "unknown")
SpeedtestState = Literal["measured", "failing", "waiting", "no_tester", "no_agents"]
#: Where a school's speed tests stand in the window: measured (a successful test); failing
#: (tests, none successful); waiting (a designated tester is live, no test yet); no_tester
#: (live agents, none designated to run speed tests); no_agents (no live agent).
SPEEDTEST_STATES: tuple[SpeedtestState, ...] = (
    "measured", "failing", "waiting", "no_tester", "no_agents",
)  # fmt: skip
MONITORING_STATES: tuple[Monitoring, ...] = ("live", "at_risk", "drop_off", "never")
#: What a school's gap of one kind rests on: a test, inventory or heartbeats within the policy
#: windows ("measured"), the policy's rule for missing evidence ("assumed"), or nothing ("absent").
Evidence = Literal["measured", "assumed", "absent"]
EVIDENCE: tuple[Evidence, ...] = ("measured", "assumed", "absent")
#: The kinds whose gap says what it rests on (a column `<kind>_evidence` each).
EVIDENCE_KINDS: tuple[str, ...] = ("bandwidth", "computers", "availability")
#: Which list a school belongs on: a shortfall found from evidence (the budget), only assumed
#: need or no monitoring (survey or enrol), or neither.
Need = Literal["measured", "assumed", "none"]
NEEDS: tuple[Need, ...] = ("measured", "assumed", "none")
#: Kinds of `edugap_school_shortfall{kind}`; a school has each one or not.
SHORTFALL_KINDS: tuple[str, ...] = (
    "bandwidth",  # 7-day median download below the required Mbps
    "computers",  # fewer usable computers than required
    "availability",  # uptime during school hours below the target
    "isp_contract",  # measured below the compliance share of the contracted Mbps
    "os_upgrade",  # computers running an OS out of vendor support
    "not_monitored",  # monitoring status is drop_off or never
)


#: A reject keeps at most this many characters of its payload.
REJECT_EXCERPT_CHARS = 512


class StoreError(RuntimeError):
    """A store operation failed; the message names the store and the operation."""


class StoreDataError(StoreError):
    """A batch failed because of a value some report in it holds, not because the store is down.

    Writing the same batch again fails again; ingest splits it to find the report and rejects
    that one alone. Every other StoreError (disk full, database down) is worth retrying.
    """


@dataclass(frozen=True, slots=True)
class School:
    """One row of the school registry."""

    school_id: str
    name: str
    province: str
    commune: str
    level: str
    lat: float
    lon: float
    students: int
    computers_required: int | None = None
    contracted_mbps: float | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """A validated report as ingest hands it to the store."""

    report: AnyReport  # measured_at already clamped to received_at when implausible
    received_at: datetime
    # When the report shows its device alive, if not received_at (a live message): a retained
    # message replayed at subscribe time is only as fresh as its own plausible measured_at.
    seen_at: datetime | None = None
    # What this report tells about its agent's clock, when it tells anything: received_at minus
    # the measured_at the agent sent, and whether that is off by more than ingest tolerates.
    clock_offset_s: float | None = None
    clock_off: bool = False
    # The measured_at the agent sent, when ingest clamped it: the store keys report ids on the
    # time as sent, which a redelivery repeats, and not on the clamp, which moves with receipt.
    sent_measured_at: datetime | None = None

    @property
    def seen(self) -> datetime:
        """The time this report proves its device was alive."""
        return self.received_at if self.seen_at is None else self.seen_at

    @property
    def measured_as_sent(self) -> datetime:
        """The report's measured_at as its agent sent it (before any clamp)."""
        return self.report.measured_at if self.sent_measured_at is None else self.sent_measured_at


@dataclass(frozen=True, slots=True)
class Reject:
    """A message that ingest refused, kept (bounded) for operators to inspect."""

    received_at: datetime
    topic: str
    reason: str
    detail: str
    payload_excerpt: str  # at most REJECT_EXCERPT_CHARS, undecodable bytes replaced


@dataclass(frozen=True, slots=True)
class BandwidthRow:
    """One stored speed test (successful, failed or skipped)."""

    school_id: str
    device_id: str
    measured_at: datetime
    download_mbps: float | None
    upload_mbps: float | None
    latency_ms: float | None
    error: str | None
    skipped: bool


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """The latest inventory of one device, and when the device was last heard from."""

    school_id: str
    device_id: str
    inventory_at: datetime | None  # None: heard from, but no inventory yet
    last_seen: datetime
    memory_mb: int | None
    cpu_cores: int | None
    os_name: str | None
    os_version: str | None
    out_of_support: bool | None
    machine_kind: str | None
    hardware_hash: str | None
    clock_off: bool = False  # the newest evidence says the agent's clock is far off
    speed_tester: bool | None = None  # designated to run speed tests (None: agent too old)


@dataclass(frozen=True, slots=True)
class HeartbeatHour:
    """Heartbeats of one school summed over one UTC hour (enough for uptime and 7-day stats)."""

    school_id: str
    hour: datetime  # start of the hour, UTC
    heartbeats: int
    checks: int
    checks_ok: int


@dataclass(slots=True)
class SpeedTests:
    """One school's successful speed tests in a window: what the policy statistic needs."""

    down: list[float] = field(default_factory=list)
    up: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    newest: datetime | None = None  # measured_at of the newest one
    failed: int = 0  # tests in the window that failed (an error, or no download)


OsRelease = tuple[str, str]  # (os name, os version) as an inventory reports them


@dataclass(slots=True)
class DeviceCounts:
    """One school's live devices: how many report, are usable, run an OS out of support."""

    reporting: int = 0
    usable: int = 0
    out_of_support: int = 0
    clock_off: int = 0
    speed_testers: int = 0  # designated to run the school's speed tests (Inventory.speed_tester)


class Store(Protocol):
    """Where the collector keeps the registry and the reports. Two backends: SQLite, PostgreSQL."""

    url: str  # without password

    def save_batch(self, batch: list[Received]) -> list[bool]:
        """Store a batch in one transaction; per item True if stored, False if a duplicate
        (a report id its school has sent before).

        Returns only once the batch is durable. Raises StoreDataError when a value in the
        batch cannot be stored (nothing of the batch is), StoreError for everything else.
        """
        ...

    def save_rejects(self, rejects: list[Reject]) -> None:
        """Keep rejected messages, pruning to the newest few thousand."""
        ...

    def recent_rejects(self, limit: int = 100) -> list[Reject]: ...

    def upsert_schools(self, schools: list[School]) -> int:
        """Insert or update registry rows by school_id; returns how many rows were written."""
        ...

    def schools(self) -> list[School]: ...

    def reporting_school_ids(self) -> set[str]:
        """Every school_id that has sent at least one stored report (registered or not)."""
        ...

    def last_report_per_school(self) -> dict[str, datetime]:
        """When the newest stored report of each school was received (`Received.seen`)."""
        ...

    def bandwidth_since(self, since: datetime) -> list[BandwidthRow]: ...

    def devices(self) -> list[DeviceRow]: ...

    def heartbeat_hours_since(self, since: datetime) -> list[HeartbeatHour]: ...

    # --- aggregates: the database sums, so national scale does not become millions of objects

    def speed_tests_since(self, since: datetime) -> dict[str, SpeedTests]:
        """Per school, successful speed tests (a download, no error, not skipped) since `since`,
        and how many others failed (`SpeedTests.failed`; skipped ones are neither)."""
        ...

    def device_counts(
        self, live_since: datetime, min_memory_mb: float, min_cores: int
    ) -> dict[str, DeviceCounts]:
        """Per school, devices last seen at or after `live_since`; usable: RAM and cores at
        least the minimums (unknown counts as 0); out of support: the agent's own flag (a hint
        the policy does not use, see `device_os`); clock off: the newest evidence about the
        agent's clock says it is far off; speed testers: the newest inventory says the device
        was designated to run speed tests."""
        ...

    def device_os(self, live_since: datetime) -> dict[str, dict[OsRelease, int]]:
        """Per school, devices last seen at or after `live_since` that sent an inventory,
        counted by the OS name and version they report ('' when absent). The policy decides
        from these which are out of support, and that the school's inventory is recent."""
        ...

    def heartbeat_sums(self, hours: Collection[datetime]) -> dict[str, tuple[int, int]]:
        """Per school, (sum of min(checks_ok, checks), sum of checks) over the heartbeat hours
        starting at one of `hours` with checks > 0; schools without such hours are absent."""
        ...

    def prune(self, before: datetime, report_ids_before: datetime | None = None) -> int:
        """Delete raw rows (bandwidth, heartbeat hours) older than `before`, and report ids
        received before `report_ids_before` (default: `before`)."""
        ...

    def unwritable(self) -> str | None:
        """Why the store cannot take writes now (its disk is full), or None when it can."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SchoolStatus:
    """Everything the policy concludes about one school."""

    school_id: str
    registered: bool
    name: str
    province: str  # "" when unregistered
    commune: str
    level: str
    lat: float | None
    lon: float | None
    students: int | None
    required_mbps: float | None
    download_mbps: float | None  # the policy statistic (default: 7-day median) of successful tests
    upload_mbps: float | None
    latency_ms: float | None
    tests_7d: int
    connectivity: Connectivity
    uptime_pct: float | None  # during school hours, from heartbeats; None without heartbeats
    contracted_mbps: float | None
    isp_compliant: bool | None  # None when there is no contract or no measurement
    monitoring: Monitoring
    last_report: datetime | None
    devices_reporting: int
    devices_clock_off: int  # live devices whose agent's clock is far off (see docs/policy.md)
    computers_usable: int
    computers_required: int | None
    computers_gap: int
    os_out_of_support: int
    bandwidth_gap_mbps: float
    shortfalls: tuple[str, ...]
    priority: float  # from measured need; measured need ranks first (Snapshot.by_priority)
    bandwidth_evidence: Evidence = "absent"
    computers_evidence: Evidence = "absent"
    availability_evidence: Evidence = "absent"
    need: Need = "none"
    priority_assumed: float = 0.0  # from assumed gaps and not being monitored; ranks second
    speedtest: SpeedtestState = "no_agents"  # see SPEEDTEST_STATES
    speed_testers: int = 0  # live devices designated to run the school's speed tests
    tests_failed_7d: int = 0  # speed tests in the window that failed


@dataclass(frozen=True, slots=True)
class AreaSummary:
    """Counts and gap totals for one province (commune None) or one commune."""

    province: str
    commune: str | None
    schools: int
    by_connectivity: dict[str, int]
    by_monitoring: dict[str, int]
    shortfalls: dict[str, int]
    bandwidth_gap_mbps: float
    computers_gap: int
    computers_usable: int
    computers_required: int
    os_out_of_support: int
    # the gap totals above, apart by what they rest on (measured + assumed = the total)
    bandwidth_gap_measured_mbps: float = 0.0
    bandwidth_gap_assumed_mbps: float = 0.0
    computers_gap_measured: int = 0
    computers_gap_assumed: int = 0
    by_need: dict[str, int] = field(default_factory=dict)  # NEEDS -> schools
    by_speedtest: dict[str, int] = field(default_factory=dict)  # SPEEDTEST_STATES -> schools


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The policy's view of every school at one moment; what metrics, API and exports read."""

    generated_at: datetime
    schools: dict[str, SchoolStatus]  # registered and unregistered, by school_id
    provinces: list[AreaSummary]
    communes: list[AreaSummary]
    timezone: str = "UTC"  # the policy's zone: exports show times in it

    def by_priority(self) -> list[SchoolStatus]:
        """Schools with measured need first, by priority; then the others by their assumed
        priority; then by school_id. Assumed need never outranks measured need."""
        return sorted(self.schools.values(), key=rank)


def rank(s: SchoolStatus) -> tuple[bool, float, float, str]:
    """The sort key of `Snapshot.by_priority`."""
    return (s.need != "measured", -s.priority, -s.priority_assumed, s.school_id)


@dataclass
class IngestStats:
    """Counters that ingest updates and metrics read; one lock, cheap increments."""

    messages: Counter[str] = field(default_factory=Counter)  # result -> count
    store_errors: int = 0
    # reports whose measured_at was implausible and clamped to the receive time, by direction
    clamped: Counter[str] = field(default_factory=Counter)  # "ahead" / "behind" -> count
    batches: int = 0
    last_lag_seconds: float = 0.0  # received_at - measured_at of the last stored report
    last_batch_at: datetime | None = None
    connected: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # the MQTT reader ingest runs: "fast" (FastClient) or "paho" (the slower fallback); "" when
    # no ingest runs; and the paho-mqtt version, for the reader info metric
    reader: str = ""
    paho_version: str = ""

    def count(self, result: str, n: int = 1) -> None:
        with self.lock:
            self.messages[result] += n
