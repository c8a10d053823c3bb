"""Retiring a stopped collector: its queued share stored, then its broker session ended.

Verified against Mosquitto 2.0.11: a session resumed with `clean_start=false` delivers what it
queued; unsubscribing at once stops further routing to it while the queued messages still
arrive; a later connection with a clean start ends the session. Nothing is ended before every
message received is stored (or rejected) and acknowledged: if the store fails, the session is
kept and the command can run again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edugap.collector.collectors import ClientId, CollectorEntry, RetireError, live_peers
from edugap.collector.config import CollectorConfig
from edugap.collector.ingest.consumer import REPORT_TOPICS, Ingest
from edugap.collector.model import IngestStats, Store
from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetireResult:
    session_present: bool
    received: int
    stored: int
    duplicate: int
    rejected: int


def check_retirable(
    entries: list[CollectorEntry],
    group: str,
    name: str,
    client_id: ClientId,
    force: bool,
    now: float,
) -> CollectorEntry | None:
    """The registry row of the collector to retire; RetireError if retiring it looks unsafe."""
    target = next((e for e in entries if (e.group, e.name) == (group, name)), None)
    if force:
        return target
    if target is None:
        known = ", ".join(f"{e.group}/{e.name}" for e in entries) or "none"
        raise RetireError(
            f"no collector {name!r} in group {group!r} in the registry (known: {known}); "
            "check ingest.group, or use --force for a session the registry does not know"
        )
    if target.live(now):
        raise RetireError(
            f"collector {name!r} is running (on {target.host}, pid {target.pid}, seen "
            f"{now - target.last_seen_at:.0f} s ago): stop it first; taking over its session "
            "now would only make the two disconnect each other"
        )
    if target.client_id_hash != client_id.fingerprint:
        raise RetireError(
            f"the client id derived from this configuration (fingerprint "
            f"{client_id.fingerprint}) is not the one {name!r} used ({target.client_id_hash}): "
            "it had another broker password or an explicit ingest.client_id; give that id "
            "with --client-id"
        )
    if not live_peers(entries, target, now):
        raise RetireError(
            f"no other collector of group {group!r} is running: once {name!r}'s session ends, "
            "no collector would be subscribed (MQTT 5 agents would hold their reports, MQTT "
            "3.1.1 agents' reports would be lost); start another collector first, or --force"
        )
    return target


def retire(
    store: Store,
    config: CollectorConfig,
    client_id: ClientId,
    share: str,
    *,
    quiet_seconds: float = 2.0,
    timeout: float = 600.0,
) -> RetireResult:
    """Store what the session of `client_id` queued, then end the session (`share`: the
    group's $share name, one of the subscriptions to remove from it)."""
    broker = config.broker_settings()
    stats = IngestStats()
    # before shares had random names, a group shared under its plain name
    former = (f"$share/{config.ingest_group}/{REPORT_TOPICS}",)
    ingest = Ingest(
        store, broker, group=share, client_id=client_id.value, retiring=True, former=former,
        batch_max=config.ingest_batch_max, batch_seconds=config.ingest_batch_seconds,
        max_future_skew_s=config.ingest_max_future_skew_seconds, stats=stats,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    ingest.start()
    try:
        while not ingest.ready():
            if time.monotonic() > deadline:
                raise RetireError(f"could not take over the session at {broker.url} in time")
            time.sleep(0.05)
        _wait_quiet(ingest, quiet_seconds, deadline)
    finally:
        ingest.stop()
    handled = sum(stats.messages.values())
    if handled != ingest.received:
        raise RetireError(
            f"{ingest.received - handled} of {ingest.received} queued report(s) could not be "
            "stored; the session is kept with them: fix the store and run retire again"
        )
    end_session(broker, client_id.value)
    m = stats.messages
    rejected = handled - m["stored"] - m["duplicate"]
    return RetireResult(
        bool(ingest.session_present), ingest.received, m["stored"], m["duplicate"], rejected
    )


def _wait_quiet(ingest: Ingest, quiet_seconds: float, deadline: float) -> None:
    """Until every report received is handled and none came for `quiet_seconds`."""
    while time.monotonic() < deadline:
        if not ingest.wait_idle(max(0.0, deadline - time.monotonic())):
            break
        seen = ingest.received
        time.sleep(quiet_seconds)
        if ingest.received == seen and ingest.wait_idle(0):
            return
    raise RetireError("the session kept delivering reports until the timeout; it is kept")


def end_session(broker: BrokerSettings, client_id: str, timeout: float = 30.0) -> None:
    """Connect once with a clean start (MQTT 5: session expiry 0), then leave: the broker
    discards the session and its subscriptions."""
    client = new_client(broker, client_id, clean_start=True)
    answered = threading.Event()
    failure: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            failure.append(str(rc))
        answered.set()

    client.on_connect = on_connect
    client.connect_async(broker.host, broker.port, **connect_properties(broker, clean_start=True))  # type: ignore[arg-type]
    client.loop_start()
    try:
        if not answered.wait(timeout):
            raise RetireError(f"no answer from {broker.url} when ending the session")
        if failure:
            raise RetireError(f"{broker.url} refused to end the session: {failure[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
