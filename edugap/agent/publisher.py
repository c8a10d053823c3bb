"""MQTT publisher: one paho v2 connection for one device, its presence and its echo subscription.

paho's callbacks run on its network thread; here they only turn what happened into an Event on
a queue. The service's thread reads the queue and owns the outbox, so SQLite is touched from
one thread only. QoS 1 messages handed to paho stay in paho's own queue across reconnects and
are re-sent by it, so the drain hands each row to paho once per process (no duplicates from
us); a restart re-sends what was never acknowledged.

What a PUBACK means (no subscriber, refused by the ACL) is decided in edugap.agent.drain.
Why a connection failed is classified once (edugap.protocol.mqtt.connect_cause) and handed to
the service, which logs it once per change.
"""

from __future__ import annotations

import logging
import queue
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edugap.agent.drain import NO_MATCHING_SUBSCRIBERS, Drain
from edugap.protocol import messages as protocol
from edugap.protocol.mqtt import (
    BrokerSettings,
    Cause,
    connect_cause,
    connect_properties,
    new_client,
)

if TYPE_CHECKING:
    from edugap.agent.probes import Identity

__all__ = ["NO_MATCHING_SUBSCRIBERS", "Drain", "Event", "Publisher"]

log = logging.getLogger(__name__)

_SILENT_HANDSHAKES_BEFORE_FALLBACK = 2
#: paho's disconnect reason when nothing came back within the keep-alive (no CONNACK at all)
_KEEPALIVE_TIMEOUT = 0x8D


@dataclass(frozen=True, slots=True)
class Event:
    """Something the broker connection reports to the service thread."""

    # connected, refused, refused_version, connect_failed, disconnected, published, echo
    kind: str
    mid: int = 0
    ok: bool = True
    reason: str = ""
    code: int = 0  # the PUBACK's reason code (always 0 on MQTT 3.1.1)
    cause: Cause | None = None  # why a connection failed or ended
    payload: bytes = b""  # an echo's


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
        self._answered = False  # a CONNACK came on the current attempt
        self.client = self._new_client()

    @property
    def status_topic(self) -> str:
        return protocol.topic_for(self.school_id, self.device_id, "status")

    @property
    def echo_topic(self) -> str:
        return protocol.echo_topic(self.school_id, self.device_id)

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
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
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
        """Replace the client with an MQTT 3.1.1 one (the broker refused MQTT 5, or twice hung
        up on an MQTT 5 handshake without answering)."""
        from dataclasses import replace

        log.warning(
            "broker %s does not take MQTT 5; trying MQTT 3.1.1 (set broker.mqtt_version = 3 "
            "to start with it)",
            self.settings.url,
        )
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
        self._answered = True
        if rc.is_failure:
            cause = connect_cause(self.settings, reason=rc)
            kind = "refused"
            if cause.kind == "protocol" and self.settings.mqtt_version == 5:
                kind = "refused_version"
            # never a fall-back on bad credentials: MQTT 3.1.1 would be refused the same way
            self.events.put(Event(kind, ok=False, reason=str(rc), cause=cause))
            return
        # subscribed before anything is published: the broker handles this connection's
        # packets in order, so the echo (edugap.agent.roundtrip) finds the subscription
        client.subscribe(self.echo_topic, qos=1)
        self.connected = True
        self._fresh_failure = True
        self._ever_connected = True
        self.events.put(Event("connected"))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:` block: the exception is the cause
        error = sys.exc_info()[1]
        cause = connect_cause(self.settings, error=error or OSError("connection failed"))
        self.events.put(Event("connect_failed", ok=False, reason=cause.detail, cause=cause))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.events.put(Event("echo", payload=bytes(message.payload)))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.connected = False
        answered, self._answered = self._answered, False
        if not answered and not self._ever_connected and self.settings.mqtt_version == 5:
            # the TCP connection was up (paho reports a failed TCP connect elsewhere) but no
            # CONNACK came: some MQTT 3.1.1-only brokers (amqtt) ignore an MQTT 5 CONNECT
            # instead of refusing it; after two such silences, try 3.1.1. A refusal (bad
            # password, say) is an answer: it never leads here.
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
        cause = None
        if not answered:  # up at TCP (and TLS) level, but no CONNACK
            silent = getattr(rc, "value", 0) == _KEEPALIVE_TIMEOUT
            cause = connect_cause(self.settings, error=TimeoutError() if silent else None)
        self.events.put(Event("disconnected", ok=False, reason=str(rc), cause=cause))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        self.events.put(
            Event("published", mid=mid, ok=not rc.is_failure, reason=str(rc), code=rc.value)
        )
