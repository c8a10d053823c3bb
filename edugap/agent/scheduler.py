"""When each job runs: a pure, clock-free component; the service asks it with the time.

Jobs: `inventory` at start and every N hours; `availability` checks and `heartbeat` every M
minutes; `speedtest` K times a school day at random moments inside school hours in the
school's time zone, never before a random start delay, so a province's agents never test at
once. Nothing here sleeps or reads the clock, so tests drive it with any times they like.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from edugap.agent.config import DAYS, ScheduleConfig, load_zone

INVENTORY = "inventory"
AVAILABILITY = "availability"
HEARTBEAT = "heartbeat"
SPEEDTEST = "speedtest"


def within_budget(used_bytes: int, estimated_bytes: int, budget_mb: float) -> bool:
    """True when a test of `estimated_bytes` keeps today's traffic inside the daily budget."""
    return used_bytes + estimated_bytes <= budget_mb * 1_000_000


@dataclass(slots=True)
class _Every:
    interval: timedelta
    next_at: datetime

    def fire(self, now: datetime) -> bool:
        if now < self.next_at:
            return False
        self.next_at += self.interval
        if self.next_at <= now:
            # the computer slept or the process stalled: carry on from now, no burst of catch-up
            self.next_at = now + self.interval
        return True


class Scheduler:
    """Which jobs are due at a given time, and when the next one is."""

    def __init__(
        self,
        schedule: ScheduleConfig,
        *,
        start: datetime,
        speedtests: bool = True,
        tests_done_today: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self._cfg = schedule
        self._rng = rng or random.Random()
        self._tz: tzinfo = load_zone(schedule.timezone)
        self._speedtests = speedtests and schedule.speedtests_per_day > 0
        delay = self._rng.uniform(0, schedule.max_start_delay_seconds)
        self.not_before = start + timedelta(seconds=delay)
        self._timers = {
            INVENTORY: _Every(timedelta(hours=schedule.inventory_hours), start),
            AVAILABILITY: _Every(timedelta(minutes=schedule.availability_minutes), start),
            HEARTBEAT: _Every(
                timedelta(minutes=schedule.heartbeat_minutes),
                start + timedelta(minutes=schedule.heartbeat_minutes),
            ),
        }
        self._plan: list[datetime] = []
        self._planned_day: date | None = None
        self._plan_day(self.local_day(start), start, tests_done_today)

    def local_day(self, moment: datetime) -> date:
        """The school's calendar day at `moment` (the daily budget resets on it)."""
        return moment.astimezone(self._tz).date()

    @property
    def speedtest_plan(self) -> list[datetime]:
        """The remaining speed-test times of the planned day (UTC)."""
        return list(self._plan)

    def _plan_day(self, day: date, now: datetime, done: int) -> None:
        self._planned_day = day
        self._plan = []
        if not self._speedtests or DAYS[day.weekday()] not in self._cfg.school_days:
            return
        opens, closes = self._cfg.school_hours
        start = datetime.combine(day, opens, self._tz).astimezone(UTC)
        end = datetime.combine(day, closes, self._tz).astimezone(UTC)
        # a restart mid-day spreads the tests still owed today over the hours that remain
        start = max(start, now, self.not_before)
        count = self._cfg.speedtests_per_day - done
        if count <= 0 or end <= start:
            return
        span = (end - start).total_seconds()
        self._plan = sorted(
            start + timedelta(seconds=self._rng.uniform(0, span)) for _ in range(count)
        )

    def due(self, now: datetime) -> list[str]:
        """The jobs due at `now`, in a sensible order; each is then scheduled again."""
        today = self.local_day(now)
        if today != self._planned_day:
            self._plan_day(today, now, 0)
        jobs = [name for name, timer in self._timers.items() if timer.fire(now)]
        if self._plan and self._plan[0] <= now:
            # several planned moments passed at once (sleep, suspend): run one test, not a burst
            self._plan = [t for t in self._plan if t > now]
            jobs.append(SPEEDTEST)
        return jobs

    def next_at(self) -> datetime:
        """When `due` may next return something (also the next local midnight, to re-plan)."""
        candidates: Iterable[datetime] = [t.next_at for t in self._timers.values()]
        if self._plan:
            candidates = [*candidates, self._plan[0]]
        if self._planned_day is not None:
            midnight = datetime.combine(self._planned_day + timedelta(days=1), time(), self._tz)
            candidates = [*candidates, midnight.astimezone(UTC)]
        return min(candidates)
