"""What one received report says about its device's liveness and its agent's clock.

Liveness is when the collector received a report, never the agent's own clock: a school whose
agents' clocks are wrong still reports. An implausible measured_at (further ahead than the
allowed skew, or before any edugap agent could have measured) is clamped to the receive time,
counted by direction, and flags the device's clock; a live `status` online measures the
clock's offset too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from edugap.collector.model import Received
from edugap.protocol.messages import EARLIEST_TIME, AnyReport, Status

#: No edugap agent measured anything before protocol v1 existed: an earlier measured_at is a
#: clock that is behind (a dead CMOS battery resets it to 1970, 2000 or the firmware's date).
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)
#: A live `status` online is published at connect, so received_at - measured_at is the agent's
#: clock error plus transit; above this the clock counts as behind. Generous, because the
#: message may have waited at the broker while no collector was subscribed.
STATUS_BEHIND_TOLERANCE_S = 86400.0

Direction = Literal["ahead", "behind"]


def assess(
    report: AnyReport, retained: bool, received_at: datetime, max_future_skew_s: float
) -> tuple[Received, Direction | None]:
    """The Received for `report`, and the direction its measured_at was clamped in, if it was.

    `retained`: the broker replayed the message at subscribe time (a retained `status`); it is
    only as fresh as its own plausible time, and no measure of the clock.
    """
    measured = report.measured_at
    offset = (received_at - measured).total_seconds()
    clamped: Direction | None = None
    if offset < -max_future_skew_s:
        clamped = "ahead"
    elif measured < EARLIEST_PLAUSIBLE:
        clamped = "behind"
    if clamped is not None:
        report = msgspec.structs.replace(report, measured_at=received_at)
    if retained:
        seen = EARLIEST_TIME if clamped else min(measured, received_at)
        sent = measured if clamped else None
        return Received(report, received_at, seen_at=seen, sent_measured_at=sent), clamped
    if clamped is not None:
        item = Received(report, received_at, clock_offset_s=offset, clock_off=True,
                        sent_measured_at=measured)  # fmt: skip
        return item, clamped
    if isinstance(report, Status) and report.state == "online":
        off = offset > STATUS_BEHIND_TOLERANCE_S
        return Received(report, received_at, clock_offset_s=offset, clock_off=off), None
    return Received(report, received_at), None
