"""What a received report says about liveness and its agent's clock
(edugap.collector.ingest.clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from edugap.collector.ingest.clocks import assess
from edugap.protocol.messages import EARLIEST_TIME
from tests.collector.reports import bandwidth, status

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SKEW = 600.0
CMOS = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "clamped", "off"),
    [
        (NOW - timedelta(days=3), None, False),  # late from an outbox: a true time
        (NOW + timedelta(minutes=9), None, False),  # within the skew
        (NOW + timedelta(minutes=11), "ahead", True),
        (NOW + timedelta(days=365 * 70), "ahead", True),
        (CMOS, "behind", True),  # a dead CMOS battery
        (datetime(1970, 1, 1, tzinfo=UTC), "behind", True),
    ],
)
def test_a_live_report_is_seen_now_and_an_implausible_time_is_clamped_and_flagged(
    at: datetime, clamped: str | None, off: bool
) -> None:
    item, direction = assess(bandwidth(at=at), False, NOW, SKEW)
    assert direction == clamped
    assert item.seen == NOW
    assert item.report.measured_at == (NOW if clamped else at)
    assert item.clock_off is off
    assert (item.clock_offset_s is not None) is off
    if off:
        assert item.clock_offset_s == (NOW - at).total_seconds()


@pytest.mark.parametrize(
    ("at", "off"),
    [
        (NOW - timedelta(seconds=2), False),  # transit
        (NOW - timedelta(hours=20), False),  # may have waited at the broker
        (NOW - timedelta(days=2), True),
        (NOW + timedelta(minutes=20), True),
    ],
)
def test_a_live_status_online_measures_the_clock(at: datetime, off: bool) -> None:
    item, _ = assess(status(at=at), False, NOW, SKEW)
    assert item.clock_off is off and item.clock_offset_s is not None
    offline = msgspec.structs.replace(status(at=at), state="offline")
    item, clamped = assess(offline, False, NOW, SKEW)
    if clamped is None:  # the last will was written at connect: no measure of the clock
        assert item.clock_offset_s is None


def test_a_retained_status_replayed_at_subscribe_time_is_not_fresh_evidence() -> None:
    week_ago = NOW - timedelta(days=7)
    item, _ = assess(status(at=week_ago), True, NOW, SKEW)
    assert item.seen == week_ago and item.clock_offset_s is None
    item, direction = assess(status(at=CMOS), True, NOW, SKEW)
    assert direction == "behind" and item.seen == EARLIEST_TIME  # never live on that time
    item, _ = assess(status(at=NOW + timedelta(days=1)), True, NOW, SKEW)
    assert item.seen == EARLIEST_TIME
