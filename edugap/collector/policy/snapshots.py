"""The current snapshot, and the thread that keeps it fresh by evaluating the policy periodically.

Metrics, the HTTP API and the coverage page only ever read `SnapshotHolder.current`; evaluation
runs off the request path, so a scrape never waits for the policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from edugap.collector.model import Snapshot
from edugap.protocol.messages import utcnow

log = logging.getLogger(__name__)

Evaluator = Callable[[datetime], Snapshot]


class Pruner(Protocol):
    """Deletes raw rows older than `before` and report ids older than `report_ids_before`."""

    def __call__(self, before: datetime, report_ids_before: datetime | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One evaluated snapshot and how long the evaluation took."""

    snapshot: Snapshot
    duration_seconds: float
    sequence: int  # 1 for the first snapshot, +1 for each new one


class SnapshotHolder:
    """Holds the newest snapshot; readers get an immutable reference without locking."""

    def __init__(self) -> None:
        self._info: SnapshotInfo | None = None
        self._lock = threading.Lock()
        self.errors = 0  # evaluations that raised
        self._listeners: list[Callable[[SnapshotInfo], object]] = []

    @property
    def info(self) -> SnapshotInfo | None:
        return self._info

    @property
    def current(self) -> Snapshot | None:
        info = self._info
        return info.snapshot if info else None

    def on_new(self, listener: Callable[[SnapshotInfo], object]) -> None:
        """Call `listener` (on the refresher's thread) after each new snapshot."""
        self._listeners.append(listener)

    def publish(self, snapshot: Snapshot, duration_seconds: float) -> SnapshotInfo:
        with self._lock:
            sequence = self._info.sequence + 1 if self._info else 1
            info = SnapshotInfo(snapshot, duration_seconds, sequence)
            self._info = info
        for listener in self._listeners:
            try:
                listener(info)
            except Exception:
                log.exception("snapshot listener %r failed", listener)
        return info

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1


class SnapshotRefresher:
    """Evaluates the policy every `interval` seconds and prunes old rows once a day."""

    def __init__(
        self,
        evaluate: Evaluator,
        holder: SnapshotHolder,
        interval: float,
        *,
        prune: Pruner | None = None,
        retention: timedelta | None = None,
        report_id_retention: timedelta | None = None,
        clock: Callable[[], datetime] = utcnow,
        prune_every: timedelta = timedelta(days=1),
    ) -> None:
        self.evaluate = evaluate
        self.holder = holder
        self.interval = interval
        self.prune = prune
        self.retention = retention
        # report ids only catch redeliveries, which come within the broker's session expiry,
        # so they need not live as long as the raw rows (None: as long)
        self.report_id_retention = report_id_retention
        self.clock = clock
        self.prune_every = prune_every
        self._last_prune: datetime | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> SnapshotInfo | None:
        """Evaluate now; on failure log, count, keep the previous snapshot and return None."""
        now = self.clock()
        started = time.perf_counter()
        try:
            snapshot = self.evaluate(now)
        except Exception:
            self.holder.count_error()
            log.exception("policy evaluation failed; keeping the previous snapshot")
            return None
        duration = time.perf_counter() - started
        info = self.holder.publish(snapshot, duration)
        log.info("snapshot of %d schools in %.3f s", len(snapshot.schools), duration)
        self._maybe_prune(now)
        return info

    def _maybe_prune(self, now: datetime) -> None:
        if self.prune is None or self.retention is None:
            return
        if self._last_prune is not None and now - self._last_prune < self.prune_every:
            return
        self._last_prune = now
        try:
            if self.report_id_retention is None:
                removed = self.prune(now - self.retention)
            else:
                removed = self.prune(now - self.retention, now - self.report_id_retention)
        except Exception:
            log.exception("pruning rows older than %s failed", self.retention)
            return
        if removed:
            log.info("pruned %d rows older than %s", removed, now - self.retention)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshot-refresher", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Evaluate again as soon as possible (e.g. after a registry import)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.wait(self.interval)
            self._wake.clear()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
