"""Helpers for ingest tests: a real paho publisher, and waiting for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import paho.mqtt.client as mqtt

from edugap.protocol.messages import AnyReport, Report, encode, new_report_id, topic_for
from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client, parse_broker_url


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` (a hang guard only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


@contextmanager
def publisher(
    broker: str | BrokerSettings, client_id: str | None = None
) -> Iterator[mqtt.Client]:
    """A connected paho client (MQTT 5) for publishing test traffic at QoS 1."""
    settings = parse_broker_url(broker) if isinstance(broker, str) else broker
    client = new_client(settings, client_id or f"test-pub-{new_report_id()[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect(settings.host, settings.port, **connect_properties(settings, True))  # type: ignore[arg-type]
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: mqtt.Client, reports: list[AnyReport]) -> None:
    """Publish reports on their topics at QoS 1 and wait until the broker has them all."""
    infos = [
        client.publish(topic_for(r.school_id, r.device_id, r.kind), encode(r), qos=1)
        for r in reports
    ]
    for info in infos:
        info.wait_for_publish(timeout=30)


def publish_raw(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(timeout=30)


class SchoolPublishers:
    """Publishes each report with its own school's credentials, one connection per school.

    The shipped ACL lets a school publish only under its own id, so tests on the shipped
    broker config send every school's reports as that school, over TLS, as agents do.
    """

    def __init__(self, settings_for: Callable[[str], BrokerSettings]) -> None:
        self._settings_for = settings_for
        self._clients: dict[str, mqtt.Client] = {}
        self._stack = ExitStack()

    def _client(self, school: str) -> mqtt.Client:
        if school not in self._clients:
            self._clients[school] = self._stack.enter_context(
                publisher(self._settings_for(school))
            )
        return self._clients[school]

    def publish(self, reports: Sequence[Report]) -> None:
        """Publish at QoS 1, each as its school, and wait until the broker has them all."""
        infos = [
            self._client(r.school_id).publish(
                topic_for(r.school_id, r.device_id, r.kind), encode(r), qos=1
            )
            for r in reports
        ]
        for info in infos:
            info.wait_for_publish(timeout=30)

    def publish_raw(self, school: str, topic: str, payload: bytes) -> None:
        self._client(school).publish(topic, payload, qos=1).wait_for_publish(timeout=30)

    def __enter__(self) -> SchoolPublishers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stack.close()
        self._clients.clear()
