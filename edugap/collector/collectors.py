"""Who the collectors are: each one's MQTT client id, and the registry they keep in the store.

**The client id is a secret.** The broker lets any authenticated client take over a session by
connecting with its client id (a school's credentials are enough), and a clean start wipes
what the session queued. So a collector's id is derived from its own broker credentials:
HMAC-SHA256 keyed with its password (or its TLS client key) over its user name, group and
name. It is stable across restarts (the broker keeps the session) and cannot be guessed by
anyone without the collector's password. Only a fingerprint of it is ever logged or stored.

**The registry.** Mosquitto offers no way to list sessions, so each collector records itself in
the store's `collectors` table: its group and name, how it subscribes, when it started and was
last seen, and whether it stopped cleanly. `edugap collectors` reads it, and retiring a
stopped collector (taking over its session to store what it queued, then ending the session)
is checked against it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from edugap.protocol.mqtt import BrokerSettings

log = logging.getLogger(__name__)

#: How often a running collector says so in the registry, in seconds.
SEEN_EVERY_SECONDS = 30.0
#: Not seen for this long: the collector is taken to be down (killed, host gone).
SILENT_AFTER_SECONDS = 3 * SEEN_EVERY_SECONDS

RUNNING, STOPPED, RETIRED = "running", "stopped", "retired"


class RetireError(RuntimeError):
    """Retiring would lose reports, or cannot be done; the message says why and what to do."""


def default_name() -> str:
    """A collector's default name: this host's name."""
    return socket.gethostname() or "collector"


def _secret(broker: BrokerSettings) -> bytes | None:
    if broker.password:
        return broker.password.encode()
    if broker.key_file:  # TLS client authentication: the private key is the secret
        try:
            return Path(broker.key_file).read_bytes()
        except OSError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class ClientId:
    """A collector's MQTT client id; `secret` is False when nothing unguessable went into it."""

    value: str
    secret: bool

    @property
    def fingerprint(self) -> str:
        """Safe to log and store: names the id without revealing it."""
        return fingerprint(self.value)

    def __repr__(self) -> str:  # never print the id itself by accident
        return f"ClientId(fingerprint={self.fingerprint!r}, secret={self.secret})"


def fingerprint(client_id: str) -> str:
    return hashlib.sha256(client_id.encode()).hexdigest()[:12]


def client_id_for(
    broker: BrokerSettings, group: str, name: str, explicit: str | None = None
) -> ClientId:
    """The client id of collector `name` in `group`: `explicit` if given, else derived."""
    if explicit:
        return ClientId(explicit, secret=True)  # the operator's choice; docs say keep it secret
    material = "\0".join(("edugap collector", broker.username or "", group, name)).encode()
    key = _secret(broker)
    if key is None:
        # a broker without passwords lets anyone do anything anyway; still stable per collector
        return ClientId("edugap-c-" + hashlib.sha256(material).hexdigest()[:32], secret=False)
    return ClientId("edugap-c-" + hmac.new(key, material, "sha256").hexdigest()[:32], secret=True)


@dataclass(frozen=True, slots=True)
class CollectorEntry:
    """One collector as the registry knows it."""

    group: str
    name: str
    shared: bool  # $share/<group>/... (several collectors) or its own subscription
    client_id_hash: str  # ClientId.fingerprint
    broker: str  # the broker URL without password
    host: str
    pid: int
    state: str  # running, stopped, retired
    started_at: float
    last_seen_at: float
    state_at: float  # when `state` was last set

    def live(self, now: float) -> bool:
        """Running and heard from recently: it holds its session and must not be retired."""
        return self.state == RUNNING and now - self.last_seen_at < SILENT_AFTER_SECONDS

    def condition(self, now: float) -> str:
        """What `edugap collectors` shows: running, silent (killed?), stopped or retired."""
        if self.state == RUNNING and not self.live(now):
            return f"silent {now - self.last_seen_at:.0f} s"
        return self.state


@runtime_checkable
class CollectorRegistry(Protocol):
    """The store's `collectors` table (both backends, migration 0003)."""

    def register_collector(self, entry: CollectorEntry) -> CollectorEntry | None:
        """Insert or replace the row of (group, name); returns the row it replaced."""
        ...

    def touch_collector(self, group: str, name: str, at: float) -> None: ...

    def set_collector_state(self, group: str, name: str, state: str, at: float) -> None: ...

    def collectors(self) -> list[CollectorEntry]:
        """Every collector, by group then name."""
        ...

    def share_name(self, group: str) -> str:
        """The group's shared-subscription name, made (new_share_name) on first use."""
        ...


def new_share_name(group: str) -> str:
    """`<group>-<32 random hex digits>`: Mosquitto lets any account subscribe to any filter, so
    a guessable $share name would let a school join the group and swallow its share."""
    return f"{group[:90]}-{secrets.token_hex(16)}"


class RegistryKeeper:
    """Keeps this collector's row current: registered at start, seen every 30 s, stopped at
    the end. A store that cannot take it is logged; ingest never waits for it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        entry: CollectorEntry,
        *,
        every: float = SEEN_EVERY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.entry = entry
        self.every = every
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-registry", daemon=True)

    @classmethod
    def for_this_process(
        cls, registry: CollectorRegistry, *, group: str, name: str, shared: bool,
        client_id: ClientId, broker: BrokerSettings,
    ) -> RegistryKeeper:  # fmt: skip
        now = time.time()
        entry = CollectorEntry(
            group, name, shared, client_id.fingerprint, broker.url, socket.gethostname(),
            os.getpid(), RUNNING, now, now, now,
        )  # fmt: skip
        return cls(registry, entry)

    def start(self) -> None:
        now = self.clock()
        self.entry = replace(self.entry, started_at=now, last_seen_at=now, state_at=now)
        try:
            before = self.registry.register_collector(self.entry)
            others = self.registry.collectors()
        except Exception as e:
            log.warning("cannot record this collector in the registry: %s", e)
        else:
            self._warn(before, others, now)
        self._thread.start()

    def _warn(
        self, before: CollectorEntry | None, others: list[CollectorEntry], now: float
    ) -> None:
        me = self.entry
        if before is not None and before.client_id_hash != me.client_id_hash:
            log.warning(
                "collector %r of group %r now connects with another client id (the broker "
                "password or ingest.client_id changed); reports its old session queued stay "
                "there until the session expires (docs/operations.md: the collector's identity)",
                me.name,
                me.group,
            )
        for other in live_peers(others, me, now):
            if not (other.shared and me.shared):
                log.warning(
                    "collector %r of group %r (on %s) is running too, and one of you does not "
                    "use the shared subscription: each report reaches both; set ingest.shared = "
                    "true on every collector of a group",
                    other.name,
                    me.group,
                    other.host,
                )

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.registry.touch_collector(self.entry.group, self.entry.name, self.clock())
            except Exception as e:
                log.warning("cannot update this collector's registry row: %s", e)

    def stop(self) -> None:
        """Record a clean stop (the session stays at the broker with what it queues)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            self.registry.set_collector_state(
                self.entry.group, self.entry.name, STOPPED, self.clock()
            )
        except Exception as e:
            log.warning("cannot record this collector's stop in the registry: %s", e)


def live_peers(
    entries: list[CollectorEntry], me: CollectorEntry, now: float
) -> list[CollectorEntry]:
    """The other collectors of `me`'s group that are running now."""
    return [e for e in entries if e.group == me.group and e.name != me.name and e.live(now)]
