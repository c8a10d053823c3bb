"""What edugap relies on in Mosquitto's behaviour, checked on the installed Mosquitto with the
shipped configuration, so that a broker upgrade that changes it fails here first.

docs/operations.md ("No report lost to a broker restart", "Groups of collectors") builds on
each of these."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker

TOPIC = "edugap/v1/HN-A/dev1/heartbeat"
REPORTS = "edugap/v1/+/+/+"


class Client:
    """A paho client that records CONNACK flags, PUBACK reason codes and what it receives."""

    def __init__(self, settings: BrokerSettings, client_id: str, clean: bool) -> None:
        self.client = new_client(settings, client_id, clean_start=clean)
        self.connacks: queue.Queue[bool] = queue.Queue()
        self.acks: queue.Queue[tuple[int, int]] = queue.Queue()
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.done: queue.Queue[int] = queue.Queue()
        self.client.on_connect = lambda _c, _u, f, _rc, _p: self.connacks.put(f.session_present)
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acks.put((mid, rc.value))
        self.client.on_message = lambda _c, _u, m: self.messages.put(m.payload)
        self.client.on_subscribe = lambda _c, _u, mid, *_: self.done.put(mid)
        self.client.on_unsubscribe = lambda _c, _u, mid, *_: self.done.put(mid)
        self.client.connect(settings.host, settings.port, **connect_properties(settings, clean))  # type: ignore[arg-type]
        self.client.loop_start()
        self.session_present = self.connacks.get(timeout=20)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        self.done.get(timeout=20)

    def unsubscribe(self, topic: str) -> None:
        self.client.unsubscribe(topic)
        self.done.get(timeout=20)

    def publish(self, n: int) -> list[int]:
        """Publish n QoS 1 messages; the PUBACK reason codes, in order."""
        mids = [self.client.publish(TOPIC, str(i).encode(), qos=1).mid for i in range(n)]
        codes = dict(self.acks.get(timeout=20) for _ in mids)
        return [codes[m] for m in mids]

    def take(self, n: int) -> int:
        """Wait for n messages, then make sure no more come (1 s); returns n."""
        for _ in range(n):
            self.messages.get(timeout=20)
        self.nothing_more()
        return n

    def nothing_more(self) -> bool:
        try:
            extra = self.messages.get(timeout=1.0)
        except queue.Empty:
            return True
        raise AssertionError(f"an unexpected message: {extra!r}")

    def close(self, **kwargs: Any) -> None:
        self.client.disconnect(**kwargs)
        self.client.loop_stop()


@contextmanager
def client(
    broker: ShippedBroker, user: str, client_id: str, *, clean: bool = True, version: int = 5
) -> Iterator[Client]:
    c = Client(broker.settings(user, mqtt_version=version), client_id, clean)
    try:
        yield c
    finally:
        c.close()


def test_no_matching_subscriber_is_0x10_for_mqtt5_and_a_plain_puback_for_mqtt311(
    deploy_broker: ShippedBroker,
) -> None:
    with (
        client(deploy_broker, "HN-A", "a5") as a5,
        client(deploy_broker, "HN-A", "a3", version=3) as a3,
    ):
        assert a5.publish(3) == [0x10] * 3  # what the agent's hold reacts to
        assert a3.publish(3) == [0] * 3  # a 3.1.1 agent cannot tell


def test_an_own_persistent_subscription_survives_a_restart_and_queues_but_a_share_does_not(
    deploy_broker: ShippedBroker,
) -> None:
    for client_id, topic in (("own", REPORTS), ("shared", f"$share/g/{REPORTS}")):
        with client(deploy_broker, COLLECTOR_USER, client_id, clean=False) as c:
            c.subscribe(topic)
    deploy_broker.restart()
    with (
        client(deploy_broker, "HN-A", "a5") as a5,
        client(deploy_broker, "HN-A", "a3", version=3) as a3,
    ):
        assert a5.publish(2) == [0, 0]  # the own subscription matches: queued
        a3.publish(2)
    with client(deploy_broker, COLLECTOR_USER, "own", clean=False) as own:
        assert own.session_present and own.take(4)
    with client(deploy_broker, COLLECTOR_USER, "shared", clean=False) as shared:
        # Mosquitto 2.0.11 keeps the session but not its $share subscription (should a later
        # version keep it, this fails: then update docs/operations.md, which says it does not)
        assert shared.session_present and shared.nothing_more()


def test_a_resumed_session_delivers_its_queue_after_unsubscribing_and_a_clean_start_ends_it(
    deploy_broker: ShippedBroker,
) -> None:
    share = f"$share/g/{REPORTS}"
    with client(deploy_broker, COLLECTOR_USER, "b", clean=False) as b:
        b.subscribe(share)
    with client(deploy_broker, COLLECTOR_USER, "a", clean=False) as a:
        a.subscribe(share)
        with client(deploy_broker, "HN-A", "a5") as a5:
            a5.publish(10)
            assert a.take(5)  # the stopped member b keeps its share
            with client(deploy_broker, COLLECTOR_USER, "b", clean=False) as retiring:
                retiring.unsubscribe(share)
                assert retiring.session_present and retiring.take(5)
                a5.publish(4)
                assert a.take(4) and retiring.nothing_more()
    with client(deploy_broker, COLLECTOR_USER, "b", clean=True):
        pass
    with client(deploy_broker, COLLECTOR_USER, "b", clean=False) as again:
        assert not again.session_present
