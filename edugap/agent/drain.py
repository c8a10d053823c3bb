"""The drain: moves outbox rows to the publisher in order, and decides what a PUBACK means.

A PUBACK is not always delivery. An MQTT 5 broker that has no subscription matching the topic
(no collector subscribed, e.g. a group of collectors not yet back after a broker restart)
answers with reason 0x10 "No matching subscribers", a success code, and drops the message. The
drain then holds: the report stays in the outbox and, after a back-off, one report is sent
again to see whether a collector is back; the first plain success resumes the drain from the
oldest report held. A broker whose ACL refuses the device's topics answers 0x87 on MQTT 5 and
a plain PUBACK on MQTT 3.1.1: the drain sends nothing until edugap.agent.roundtrip has proven,
on this connection, that the broker accepts the device's publishes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edugap.agent.outbox import Outbox, Row
from edugap.agent.roundtrip import RoundTrip

if TYPE_CHECKING:
    from edugap.agent.publisher import Publisher

log = logging.getLogger(__name__)

#: PUBACK reason of an MQTT 5 broker that took a message no subscription matched (and dropped)
NO_MATCHING_SUBSCRIBERS = 0x10


class Drain:
    """Moves outbox rows to the publisher in order: bounded inflight, optional rate limit, and a
    hold while the broker says no collector is subscribed."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        max_inflight: int = 20,
        per_second: float = 0.0,
        hold_retry: tuple[float, float] = (10.0, 300.0),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        proof: RoundTrip | None = None,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        # None only in tests of the hold alone: the service always proves delivery first
        self.proof = proof
        self.max_inflight = max_inflight
        self.per_second = per_second
        self.hold_retry = hold_retry
        self._clock = clock
        self._rng = rng or random.Random()
        self.inflight: dict[int, int] = {}  # mid -> seq
        self._topics: dict[int, str] = {}  # mid -> topic, for a refusal's message
        self.cursor = 0  # highest seq handed to paho by this process
        self._tokens = float(max_inflight)
        self._refilled = clock()
        self._acked: list[int] = []
        self.delivered = 0
        self.failed = 0
        # the hold: lowest seq the broker dropped for want of a subscriber (0: not holding)
        self._held_from = 0
        self._hold_delay = hold_retry[0]
        self._retry_at = 0.0
        self._resume = False  # a plain success came while holding: a collector is back
        self._probing = False  # one held report is out to see whether a collector is back
        self.held = 0  # answers "no matching subscribers", for the log and tests

    @property
    def holding(self) -> bool:
        return self._held_from > 0

    def on_published(self, mid: int, ok: bool, reason: str, code: int = 0) -> None:
        if self.proof is not None and self.proof.on_published(mid, ok, reason):
            return
        seq = self.inflight.pop(mid, None)
        topic = self._topics.pop(mid, "")
        if seq is None:
            return  # the status message, or a row already dropped by the outbox cap
        probe, self._probing = self._probing, False
        if ok and code == NO_MATCHING_SUBSCRIBERS:
            self._hold(seq, probe)
        elif ok:
            self._acked.append(seq)
            self._resume = self.holding
        else:
            # kept in the outbox and sent again once the broker accepts this device again
            # (an operator may fix the ACL or the config); the outbox cap bounds what waits
            self.failed += 1
            self.cursor = min(self.cursor, seq - 1)
            if self.holding and seq >= self._held_from:
                self._held_from = seq + 1  # a refused probe: the next one tries the next row
            if self.proof is not None:
                self.proof.refused(topic, reason)
            else:
                log.warning("broker refused report seq %d: %s", seq, reason)

    def on_disconnected(self) -> None:
        """On MQTT 3.1.1 a PUBACK proves nothing until the next connection is proven: forget
        what is in flight (paho re-sends it; those answers are ignored) and send it again
        from the outbox once the round trip has succeeded. MQTT 5 answers say what they mean."""
        if self.proof is not None:
            self.proof.disconnected()
        if self.publisher.settings.mqtt_version == 5 or not self.inflight:
            return
        self.cursor = min(self.cursor, min(self.inflight.values()) - 1)
        self.inflight.clear()
        self._topics.clear()
        self._probing = False

    def _hold(self, seq: int, probe: bool) -> None:
        self.held += 1
        starting = not self.holding
        self._held_from = min(self._held_from or seq, seq)
        if starting:
            log.warning(
                "the broker has no collector subscribed (PUBACK 'No matching subscribers'): "
                "keeping reports in the outbox, trying again in %.3g s",
                self._hold_delay,
            )
        elif probe:  # still nobody: wait longer next time
            self._hold_delay = min(self._hold_delay * 2, self.hold_retry[1])
        else:
            return  # the rest of the window sent before the hold began: no news
        # jitter: agents held together must not all probe in the same second
        wait = self._hold_delay * (0.75 + 0.5 * self._rng.random())
        self._retry_at = self._clock() + wait
        self.outbox.hold(wait)

    def _release(self) -> None:
        """A collector is subscribed again: resend from the oldest report held."""
        log.info("a collector is subscribed again; sending the reports held in the outbox")
        self.cursor = self._held_from - 1
        self._held_from = 0
        self._hold_delay = self.hold_retry[0]
        self._resume = False
        self.outbox.release()

    def commit_acks(self) -> int:
        """Remove acknowledged rows in one transaction (one fsync for a whole batch)."""
        removed = self.outbox.ack(self._acked)
        self.delivered += len(self._acked)
        self._acked.clear()
        return removed

    def pump(self) -> float | None:
        """Hand rows to paho while allowed; returns seconds until the rate limit (or a held
        report's next try) allows more."""
        if not self.publisher.connected:
            return None
        if self.proof is not None and not self.proof.proven:
            return self.proof.pump()
        if self.holding:
            return self._pump_held()
        room = self.max_inflight - len(self.inflight)
        if room <= 0:
            return None
        if self.per_second > 0:
            now = self._clock()
            self._tokens = min(
                float(self.max_inflight), self._tokens + (now - self._refilled) * self.per_second
            )
            self._refilled = now
            room = min(room, int(self._tokens))
            if room <= 0:
                return (1 - self._tokens) / self.per_second
        sent = self._send(self.outbox.pending(self.cursor, room))
        if self.per_second > 0:
            self._tokens -= sent
        return None

    def _pump_held(self) -> float | None:
        # every answer first: resending a row still in flight would deliver it twice
        if self.inflight or self._acked:
            return None
        if self._resume:
            self._release()
            return self.pump()
        wait = self._retry_at - self._clock()
        if wait > 0:
            return wait
        probe = self.outbox.pending(self._held_from - 1, 1)
        if not probe:  # nothing left to hold (e.g. dropped by the outbox cap)
            self._release()
            return None
        self._probing = self._send(probe) > 0
        return None

    def _send(self, rows: list[Row]) -> int:
        sent = 0
        for row in rows:
            mid = self.publisher.publish(row.topic, row.payload)
            if mid is None:
                break
            self.inflight[mid] = row.seq
            self._topics[mid] = row.topic
            self.cursor = max(self.cursor, row.seq)
            sent += 1
        return sent
