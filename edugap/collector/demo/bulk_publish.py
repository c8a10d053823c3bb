"""Bulk MQTT publishing: many (topic, payload) messages at QoS 1 through one paho client.

A bounded in-flight window keeps memory flat however many messages there are; an optional rate
limit spaces them out; progress is reported through a callback. The simulator, the demo and the
benchmarks publish through it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edugap.protocol.mqtt import BrokerSettings, ClientFactory, connect_properties, new_client

log = logging.getLogger(__name__)

Message = tuple[str, bytes]


class PublishError(RuntimeError):
    """The broker could not be reached or did not acknowledge the reports."""


@dataclass
class PublishResult:
    """What a publish run did."""

    sent: int = 0
    acked: int = 0
    failed: int = 0  # acknowledged with a failure reason code
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Acks:
    acked: int = 0
    failed: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)


class Publisher:
    """Publishes messages at QoS 1 through one paho client, with a bounded in-flight window."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_factory: ClientFactory = new_client,
        client_id: str | None = None,
        window: int = 2000,
        connect_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.window = window
        self.clock = clock
        self._acks = _Acks()
        self._connected = threading.Event()
        self._refused: str | None = None
        # A broker drops the older of two connections with one client id: one id per process.
        client_id = client_id or f"edugap-simulator-{os.getpid()}"
        self.client: mqtt.Client = client_factory(settings, client_id, clean_start=True)
        self.client.max_inflight_messages_set(min(window, 1000))
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        kwargs = connect_properties(settings, clean_start=True)
        self.client.connect_async(settings.host, settings.port, **kwargs)  # type: ignore[arg-type]
        self.client.loop_start()
        if not self._connected.wait(connect_timeout):
            self.close()
            why = self._refused or f"no answer within {connect_timeout:g}s"
            raise PublishError(f"cannot connect to broker {settings.url}: {why}")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.warning("broker %s refused the simulator: %s", self.settings.url, reason_code)
            return
        self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        with self._acks.cond:
            self._acks.acked += 1
            if reason_code.is_failure:
                self._acks.failed += 1
            self._acks.cond.notify_all()

    def publish_all(
        self,
        messages: Iterable[Message],
        rate: float = 0.0,
        progress: Callable[[PublishResult], None] | None = None,
        progress_every: float = 2.0,
        ack_timeout: float = 120.0,
    ) -> PublishResult:
        """Publish every message (QoS 1), at most `rate` a second (0: no limit); wait for acks."""
        result = PublishResult()
        started = self.clock()
        next_progress = started + progress_every
        # The counters cover the client's life; a second call reports only its own messages.
        base_acked, base_failed = self._acks.acked, self._acks.failed
        for topic, payload in messages:
            with self._acks.cond:
                # Bound what paho holds in memory: wait while the window is full.
                while result.sent - (self._acks.acked - base_acked) >= self.window:
                    if not self._acks.cond.wait(ack_timeout):
                        raise PublishError(
                            f"broker {self.settings.url} acknowledged nothing for {ack_timeout:g}s"
                        )
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                raise PublishError(
                    f"cannot publish to {self.settings.url}: {mqtt.error_string(info.rc)}"
                )
            result.sent += 1
            now = self.clock()
            if rate > 0:
                ahead = started + result.sent / rate - now
                if ahead > 0:
                    time.sleep(ahead)
            if progress and now >= next_progress:
                result.acked, result.seconds = self._acks.acked - base_acked, now - started
                progress(result)
                next_progress = now + progress_every
        with self._acks.cond:
            deadline = self.clock() + ack_timeout
            while self._acks.acked - base_acked < result.sent and self.clock() < deadline:
                self._acks.cond.wait(1.0)
            result.acked = self._acks.acked - base_acked
            result.failed = self._acks.failed - base_failed
        result.seconds = self.clock() - started
        if result.acked < result.sent:
            raise PublishError(
                f"broker {self.settings.url} acknowledged {result.acked} of {result.sent} reports"
            )
        return result

    def close(self) -> None:
        """Disconnect and stop paho's network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
