"""MQTT publisher: one paho v2 connection, and the drain that moves outbox rows to the broker.

paho's callbacks run on its network thread; here they only turn what happened into an Event on
a queue. The service's thread reads the queue and owns the outbox, so SQLite is touched from
one thread only. QoS 1 messages handed to paho stay in paho's own queue across reconnects and
are re-sent by it, so the drain hands each row to paho once per process (no duplicates from
us); a restart re-sends what was never acknowledged.

A PUBACK is not always delivery: an MQTT 5 broker that has no subscription matching the topic
(no collector subscribed, e.g. a group of collectors not yet back after a broker restart)
answers with reason 0x10 "No matching subscribers", a success code, and drops the message. The
drain then holds: the report stays in the outbox and, after a back-off, one report is sent
again to see whether a collector is back; the first plain success resumes the drain from the
oldest report held.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edugap.agent.outbox import Outbox, Row
from edugap.protocol import messages as protocol
from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client

if TYPE_CHECKING:
    from edugap.agent.probes import Identity

log = logging.getLogger(__name__)

# CONNACK "Unsupported protocol version": an MQTT 3.1.1-only broker refusing our MQTT 5 CONNECT
_UNSUPPORTED_VERSION = 132
_SILENT_HANDSHAKES_BEFORE_FALLBACK = 2
#: PUBACK reason of an MQTT 5 broker that took a message no subscription matched (and dropped)
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass(frozen=True, slots=True)
class Event:
    """Something the broker connection reports to the service thread."""

    kind: str  # connected, refused, refused_version, disconnected, published
    mid: int = 0
    ok: bool = True
    reason: str = ""
    code: int = 0  # the PUBACK's reason code (always 0 on MQTT 3.1.1)


class Publisher:
    """One MQTT connection for one device, with its presence (`status`) and last will."""

    def __init__(
        self,
        settings: BrokerSettings,
        identity: Identity,
        events: queue.Queue[Any],
        *,
        reconnect: tuple[int, int] = (1, 120),
        max_inflight: int = 20,
        client_factory: Callable[..., mqtt.Client] = new_client,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.school_id = identity.school_id
        self.device_id = identity.device_id
        self.agent_version = identity.agent_version
        self.events = events
        self.reconnect = reconnect
        self.max_inflight = max_inflight
        self._factory = client_factory
        self._rng = rng or random.Random()
        self.connected = False
        self._fresh_failure = True
        self._ever_connected = False
        self._silent_handshakes = 0
        self.client = self._new_client()

    @property
    def status_topic(self) -> str:
        return protocol.topic_for(self.school_id, self.device_id, "status")

    def _status(self, state: str) -> bytes:
        return protocol.encode(
            protocol.Status(
                report_id=protocol.new_report_id(),
                school_id=self.school_id,
                device_id=self.device_id,
                measured_at=protocol.utcnow(),
                agent_version=self.agent_version,
                state=state,  # type: ignore[arg-type]
            )
        )

    def _new_client(self) -> mqtt.Client:
        # a stable client id lets the broker take over a stale session of this same device
        client = self._factory(self.settings, client_id=f"edugap-agent-{self.device_id}")
        client.max_inflight_messages_set(self.max_inflight)
        client.reconnect_delay_set(*self.reconnect)
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself from here on."""
        log.info("connecting to %s (MQTT %s)", self.settings.url, self.settings.mqtt_version)
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            **connect_properties(self.settings, clean_start=True),  # type: ignore[arg-type]
        )
        self.client.loop_start()

    def stop(self, timeout: float = 3.0) -> None:
        """Say offline (retained), disconnect cleanly, stop paho's thread."""
        if self.connected:
            info = self.client.publish(self.status_topic, self._status("offline"), 1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    def fall_back_to_mqtt3(self) -> None:
        """Replace the client with an MQTT 3.1.1 one (the broker refused MQTT 5)."""
        from dataclasses import replace

        log.warning("broker %s refused MQTT 5; falling back to MQTT 3.1.1", self.settings.url)
        self.client.loop_stop()
        self.client.disconnect()
        self.settings = replace(self.settings, mqtt_version=3)
        self.client = self._new_client()
        self.start()

    def announce_online(self) -> None:
        """Retained `status` online, sent right after each successful connect."""
        self.client.publish(self.status_topic, self._status("online"), 1, retain=True)

    def publish(self, topic: str, payload: bytes) -> int | None:
        """Hand one QoS 1 message to paho; its mid, or None when paho would not take it."""
        info = self.client.publish(topic, payload, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("paho did not queue a message: %s", mqtt.error_string(info.rc))
            return None
        return info.mid

    # --- paho callbacks (paho's thread): decode and hand over ----------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            kind = "refused"
            if rc.value == _UNSUPPORTED_VERSION and self.settings.mqtt_version == 5:
                kind = "refused_version"
            self.events.put(Event(kind, ok=False, reason=str(rc)))
            return
        self.connected = True
        self._fresh_failure = True
        self._ever_connected = True
        self.events.put(Event("connected"))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.connected = False
        if not self._ever_connected and self.settings.mqtt_version == 5:
            # the TCP connection was up (paho reports a failed TCP connect elsewhere) but no
            # CONNACK came: some MQTT 3.1.1-only brokers (amqtt) ignore an MQTT 5 CONNECT
            # instead of refusing it; after two such silences, try 3.1.1
            self._silent_handshakes += 1
            if self._silent_handshakes == _SILENT_HANDSHAKES_BEFORE_FALLBACK:
                self.events.put(Event("refused_version", ok=False, reason=str(rc)))
        if self._fresh_failure:
            # jitter: after a broker restart, thousands of agents must not return in one second
            low, high = self.reconnect
            client.reconnect_delay_set(self._rng.randint(low, max(low, min(high, low * 4))), high)
            self._fresh_failure = False
        # a fresh will for the next connection, so each offline status has its own report id;
        # set here because paho reconnects on this thread right after this callback returns
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self.events.put(Event("disconnected", ok=False, reason=str(rc)))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        self.events.put(
            Event("published", mid=mid, ok=not rc.is_failure, reason=str(rc), code=rc.value)
        )


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
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.max_inflight = max_inflight
        self.per_second = per_second
        self.hold_retry = hold_retry
        self._clock = clock
        self._rng = rng or random.Random()
        self.inflight: dict[int, int] = {}  # mid -> seq
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
        seq = self.inflight.pop(mid, None)
        if seq is None:
            return  # the status message, or a row already dropped by the outbox cap
        probe, self._probing = self._probing, False
        if ok and code == NO_MATCHING_SUBSCRIBERS:
            self._hold(seq, probe)
        elif ok:
            self._acked.append(seq)
            self._resume = self.holding
        else:
            # kept in the outbox: a refusal (e.g. not authorised) may be fixed by an operator;
            # it is tried again at the next start, and the outbox cap bounds what waits
            self.failed += 1
            log.warning("broker refused report seq %d: %s", seq, reason)
            if self.holding and seq >= self._held_from:
                self._held_from = seq + 1  # a refused probe: the next one tries the next row

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
            self.cursor = max(self.cursor, row.seq)
            sent += 1
        return sent
