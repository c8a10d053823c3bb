"""MQTT ingest: subscription in, validated batches to the store, acks only once durable.

paho's network thread only queues each message. One writer thread decodes, batches, saves and
then acknowledges, so a message is acknowledged to the broker only after the store has it; if
the collector dies first, the broker (persistent session) sends it again and the store's report
id check makes the second copy a duplicate.

No message can stop ingest: a batch the store refuses because of a value in it is split until
the report it refuses is alone, and that report is rejected (kept with its reason) and
acknowledged while the rest are stored. Only a store-wide failure (database down, disk full)
holds the batch unacknowledged, retried with back-off. edugap.collector.ingest.clocks decides what
a report says about liveness and its agent's clock.

The subscription: a collector alone subscribes to the topics themselves; Mosquitto keeps that
subscription in its persistence file, so across a broker restart the session still matches
and queues every report while the collector is away. Collectors of a group that run at once
(`shared`) use `$share/<group>/...`, which Mosquitto 2.0 does not restore after a restart:
until each collector has subscribed again nothing matches, MQTT 5 agents are told so
("No matching subscribers") and keep their reports, MQTT 3.1.1 agents are not (see
docs/operations.md). Hence the short reconnect delay.
"""

from __future__ import annotations

import logging
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edugap.collector.collectors import client_id_for, default_name
from edugap.collector.ingest.clocks import assess
from edugap.collector.ingest.mqtt_fast import (
    PAHO,
    fallback_warning,
    fast_client,
    paho_version,
    reader_of,
)
from edugap.collector.model import (
    REJECT_EXCERPT_CHARS,
    IngestStats,
    Received,
    Reject,
    Store,
    StoreDataError,
    StoreError,
)
from edugap.protocol.messages import MAX_PAYLOAD_BYTES, TOPIC_ROOT, ProtocolError, decode, utcnow
from edugap.protocol.mqtt import (
    BrokerSettings,
    Cause,
    ClientFactory,
    connect_cause,
    connect_properties,
)

log = logging.getLogger(__name__)

# (topic, payload, mid, qos, connection generation, retained)
Item = tuple[str, bytes, int, int, int, bool]
_PUBACK = struct.Struct("!BBH")
_PUBACK_HEADER = 0x40  # packet type 4 (PUBACK) in the high nibble
# MQTT 5 Receive Maximum is a 16-bit number
_RECEIVE_MAX_LIMIT = 65535
#: The reason a report is rejected with when the store refuses a value in it.
UNSTORABLE = "unstorable"

# per stored item: True stored, False duplicate, or why the store refused it
Outcome = bool | str

#: paho's reconnect back-off, seconds: the collector is one client, and after a broker restart
#: every second without its subscription matters (see the module docstring)
RECONNECT_DELAY = (1, 2)
REPORT_TOPICS = f"{TOPIC_ROOT}/+/+/+"


class Ingest:
    """Subscribes to every agent report and writes them to the store in batches."""

    def __init__(
        self,
        store: Store,
        broker: BrokerSettings,
        *,
        group: str = "edugap",
        shared: bool = False,
        client_id: str | None = None,
        retiring: bool = False,
        former: tuple[str, ...] = (),
        batch_max: int = 2000,
        batch_seconds: float = 0.2,
        max_future_skew_s: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
        client_factory: ClientFactory = fast_client,
        stats: IngestStats | None = None,
        retry_max_seconds: float = 30.0,
    ) -> None:
        if batch_max < 1:
            raise ValueError(f"batch_max must be at least 1, got {batch_max}")
        if batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be above 0, got {batch_seconds}")
        self.store = store
        self.broker = broker
        shared_topic = f"$share/{group}/{REPORT_TOPICS}"
        self.topic, other = (
            (shared_topic, REPORT_TOPICS) if shared else (REPORT_TOPICS, shared_topic)
        )
        # retiring: take over a stopped collector's session only to store what it queued
        self.retiring = retiring
        # `former`: other filters the session may hold (e.g. from an older version)
        self._unsubscribe = [shared_topic, REPORT_TOPICS, *former] if retiring else [other]
        self.session_present: bool | None = None  # from the last CONNACK
        if client_id is None:
            client_id = client_id_for(broker, group, default_name()).value
        self.batch_max = batch_max
        self.batch_seconds = batch_seconds
        self.max_future_skew_s = max_future_skew_s
        self.clock = clock
        self.stats = stats if stats is not None else IngestStats()
        self.retry_max_seconds = retry_max_seconds
        # persistent session + manual ack: the broker keeps what we have not acknowledged
        self.client = client_factory(broker, client_id, clean_start=False, manual_ack=True)
        self.reader = reader_of(self.client)  # "fast", or "paho" when paho lacks its internals
        self.stats.reader, self.stats.paho_version = self.reader, paho_version()
        self.client.reconnect_delay_set(*RECONNECT_DELAY)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        #: why the broker cannot be reached now (None while connected), for /readyz
        self.cause: Cause | None = None
        self._answered = False  # a CONNACK came on the current attempt
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        # received - done = queued or in a batch not yet acknowledged; each counter has one
        # writer thread (paho's, the writer), so neither needs a lock per message
        self._received = 0
        self._done = 0
        self._idle = threading.Condition()
        self._generation = 0  # bumped per connection: a mid is only valid on its connection
        self._ready = False
        self._saving_since: float | None = None  # monotonic; set while save_batch is tried
        self._stopping = threading.Event()
        self._drain_until = float("inf")
        self._writer = threading.Thread(target=self._run, name="edugap-ingest", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start the writer; returns at once."""
        kwargs: dict[str, Any] = connect_properties(self.broker, clean_start=False)
        props = kwargs.get("properties")
        if props is not None:
            # Without this Mosquitto sends at most max_inflight_messages (default 20)
            # unacknowledged messages, and batches could never fill while acks wait on them.
            # (paho's max_inflight_messages_set limits only our own publishes: there are none.)
            props.ReceiveMaximum = min(_RECEIVE_MAX_LIMIT, max(2 * self.batch_max, 100))
        else:
            log.info(
                "MQTT 3.1.1: the broker's max_inflight_messages caps unacknowledged messages; "
                "set it to at least batch_max (%d) or batches wait batch_seconds to fill",
                self.batch_max,
            )
        if self.reader == PAHO and (why := fallback_warning()) is not None:
            log.warning("%s", why)
        self._writer.start()
        self.client.connect_async(self.broker.host, self.broker.port, **kwargs)
        self.client.loop_start()

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Store and acknowledge what is queued, then disconnect (the session stays).

        Messages arriving after stop() begins, or still queued after `drain_seconds`, are left
        unacknowledged: the broker keeps them for the next start.
        """
        self._drain_until = time.monotonic() + drain_seconds
        self._stopping.set()
        if self._writer.is_alive():
            self._writer.join()
        self.client.disconnect()
        self.client.loop_stop()
        self.stats.connected = False

    def ready(self) -> bool:
        """True while connected and subscribed (retiring: and unsubscribed)."""
        return self._ready

    def unsaved_for(self) -> float:
        """Seconds the writer has been trying to save its current batch (failing, or hanging
        on the store); 0 between batches. A healthy save takes well under a second."""
        since = self._saving_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def received(self) -> int:
        """Messages received since start (stored, duplicate or rejected, or still queued)."""
        return self._received

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received message is stored (or rejected) and acknowledged."""
        with self._idle:
            return self._idle.wait_for(lambda: self._received == self._done, timeout)

    # --- paho callbacks (network thread: hand over only) ---------------------------------

    def _failed(self, cause: Cause) -> None:
        """Log why the broker cannot be reached, once per change of cause (not every retry)."""
        if cause != self.cause:
            log.warning("cannot connect to %s: %s (%s)", self.broker.url, cause, cause.kind)
        self.cause = cause

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        # paho calls this inside its `except OSError:` block: the exception is the cause
        error = sys.exc_info()[1] or OSError("connection failed")
        self._failed(connect_cause(self.broker, error=error))

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._answered = True
        if reason.is_failure:
            self._failed(connect_cause(self.broker, reason=reason))
            return
        if self.cause is not None:
            log.info("the broker %s answers again", self.broker.url)
        self.cause = None
        self._generation += 1
        self.stats.connected = True
        self.session_present = bool(flags.session_present)
        log.info("connected to %s (session present: %s)", self.broker.url, flags.session_present)
        if self.session_present or self.retiring:
            # the session may hold the other form (ingest.shared changed): both would match
            # every report; a retiring collector's session must stop taking new ones at once
            client.unsubscribe(self._unsubscribe)
        if self.retiring:
            return
        if self.broker.mqtt_version == 5:
            client.subscribe(self.topic, options=SubscribeOptions(qos=1))
        else:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        failed = [c for c in codes if c.is_failure]
        if failed:
            log.error("broker refused subscription %s: %s", self.topic, failed)
            return
        self._ready = True

    def _on_unsubscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        if self.retiring:
            self._ready = True

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._ready = False
        self.stats.connected = False
        answered, self._answered = self._answered, False
        if self._stopping.is_set():
            return
        if not answered:  # up at TCP (and TLS) level, but no CONNACK
            self._failed(connect_cause(self.broker))
        elif self.cause is None:
            log.warning("disconnected from %s: %s; reconnecting", self.broker.url, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # never acknowledged: the broker keeps it for the next start
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers check this; never let it kill the network thread
            topic = message._topic.decode("utf-8", "replace")
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        self._received += 1
        self._queue.put(
            (topic, payload, message.mid, message.qos, self._generation, bool(message.retain))
        )

    # --- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                try:
                    self._process(batch)
                except Exception:  # a bug must not stop ingest; the broker redelivers
                    log.exception("ingest batch of %d messages failed", len(batch))
                finally:
                    with self._idle:
                        self._done += len(batch)
                        self._idle.notify_all()
            if self._stopping.is_set() and (not batch or time.monotonic() > self._drain_until):
                return

    def _collect(self) -> list[Item]:
        """Wait for a first message, then gather until batch_max or batch_seconds pass."""
        try:
            first = self._queue.get(timeout=0.05 if self._stopping.is_set() else 0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Item]) -> None:
        received_at = self.clock()
        valid: list[Received] = []
        messages: list[Item] = []  # the message of each valid report, to reject it if need be
        rejects: list[Reject] = []
        for item in batch:
            outcome = self._check(item[0], item[1], item[5], received_at)
            if isinstance(outcome, Reject):
                rejects.append(outcome)
            else:
                valid.append(outcome)
                messages.append(item)
        if valid:
            outcomes = self._store(valid)
            if outcomes is None:
                return  # stopping while the store is down: not acknowledged, broker resends
            self.stats.count("stored", outcomes.count(True))
            self.stats.count("duplicate", outcomes.count(False))
            for why, (topic, payload, *_) in zip(outcomes, messages, strict=True):
                if isinstance(why, str):
                    rejects.append(_reject(received_at, topic, UNSTORABLE, why, payload))
            newest = max(r.report.measured_at for r in valid)
            self.stats.last_lag_seconds = max(0.0, (received_at - newest).total_seconds())
        if rejects:
            for r in rejects:
                self.stats.count(f"rejected_{r.reason}")
            try:
                self.store.save_rejects(rejects)
            except Exception as e:  # losing the record of a bad message is acceptable
                self.stats.store_errors += 1
                log.error("cannot keep %d rejected messages: %s", len(rejects), e)
        with self.stats.lock:
            self.stats.batches += 1
            self.stats.last_batch_at = received_at
        self._ack(batch)

    def _check(
        self, topic: str, payload: bytes, retained: bool, received_at: datetime
    ) -> Received | Reject:
        """Decode one message into a Received, or the Reject saying why not."""
        if len(payload) > MAX_PAYLOAD_BYTES:  # before decoding anything
            return _reject(received_at, topic, "too_large", f"{len(payload)} bytes", payload)
        try:
            report = decode(topic, payload)
        except ProtocolError as e:
            return _reject(received_at, topic, e.reason, e.detail, payload)
        except Exception as e:
            return _reject(received_at, topic, "invalid", f"{type(e).__name__}: {e}", payload)
        item, clamped = assess(report, retained, received_at, self.max_future_skew_s)
        if clamped is not None:
            with self.stats.lock:
                self.stats.clamped[clamped] += 1
        return item

    def _store(self, items: list[Received]) -> list[Outcome] | None:
        """Save `items`; a batch the store refuses for a value in it is split in halves until
        each report it refuses is alone. Per item: True stored, False duplicate, or why it
        cannot be stored. None when asked to stop while the store is down."""
        try:
            stored = self._save(items)
        except StoreDataError as e:
            if len(items) == 1:
                log.warning("store refuses a report, rejecting it: %s", e)
                return [str(e)]
        else:
            return None if stored is None else [*stored]
        half = len(items) // 2
        first = self._store(items[:half])
        second = None if first is None else self._store(items[half:])
        return None if first is None or second is None else first + second

    def _save(self, valid: list[Received]) -> list[bool] | None:
        """save_batch, retried with backoff until it works; None if asked to stop meanwhile.

        StoreDataError is raised at once: that batch fails the same way every time."""
        self._saving_since = time.monotonic()
        try:
            return self._retry(valid)
        finally:
            self._saving_since = None

    def _retry(self, valid: list[Received]) -> list[bool] | None:
        delay = 0.2
        while True:
            try:
                return self.store.save_batch(valid)
            except StoreDataError:
                raise
            except Exception as e:
                with self.stats.lock:
                    self.stats.store_errors += 1
                if not isinstance(e, StoreError):
                    log.exception("store failed unexpectedly on a batch of %d", len(valid))
                else:
                    log.error("%s; retrying in %.1f s", e, delay)
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, self.retry_max_seconds)

    def _ack(self, batch: list[Item]) -> None:
        generation = self._generation
        # a mid from an earlier connection may now name another message: leave it, the
        # broker already resent the old one on the new connection
        mids = [item[2] for item in batch if item[3] == 1 and item[4] == generation]
        ack_all(self.client, mids)
        for item in batch:
            if item[3] == 2 and item[4] == generation:
                self.client.ack(item[2], 2)


def ack_all(client: mqtt.Client, mids: list[int]) -> None:
    """PUBACK every QoS 1 message id, in one socket write where paho lets us.

    client.ack() queues one packet per message and wakes paho's thread each time: thousands
    of syscalls per batch, each one a GIL hand-over between the writer and paho's thread.
    The same PUBACK packets (MQTT 3.1.1 and 5: fixed header, 2-byte id) joined and queued
    once cost one write. Falls back to client.ack() if paho's internals change.
    """
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    if mids:
        packets = b"".join([_PUBACK.pack(_PUBACK_HEADER, 2, mid) for mid in mids])
        queue_packet(_PUBACK_HEADER, packets, 0, 0)


def _reject(at: datetime, topic: str, reason: str, detail: str, payload: bytes) -> Reject:
    excerpt = payload[: REJECT_EXCERPT_CHARS * 4].decode("utf-8", "replace")[:REJECT_EXCERPT_CHARS]
    return Reject(at, topic, reason, detail[:2000], excerpt)
