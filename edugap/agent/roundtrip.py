"""Proof that the broker accepts this device's reports, before any of them leaves the outbox.

Mosquitto drops a publish its ACL refuses (e.g. a school id that is not the MQTT user name).
On MQTT 5 it says so in the PUBACK (0x87 "Not authorized"); on MQTT 3.1.1 it sends a plain
PUBACK, so an agent that trusted the PUBACK would delete reports nobody received. Hence, after
each connect, the agent publishes one small message to its own echo topic
(`edugap.protocol.messages.echo_topic`), to which it is subscribed: on MQTT 5 the PUBACK's
reason code decides, on MQTT 3.1.1 the message coming back does. Until then the drain sends
nothing; when refused it sends nothing, records why in the outbox (`edugap-agent status`) and
tries again after a growing wait.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable

from edugap.protocol.messages import echo_topic
from edugap.protocol.mqtt import BrokerSettings, Cause, topic_cause

log = logging.getLogger(__name__)

PENDING, PROVEN, REFUSED = "pending", "proven", "refused"
#: why an MQTT 3.1.1 round trip failed: the broker acknowledged the echo and never delivered it
NOT_DELIVERED_BACK = (
    "published but never delivered back: refused, or the broker's ACL lacks "
    "'pattern read edugap/v1/%u/+/echo/#'"
)


class RoundTrip:
    """One verdict per connection: may this device publish under its school's topics?"""

    def __init__(
        self,
        school_id: str,
        device_id: str,
        publish: Callable[[str, bytes], int | None],
        *,
        echo_timeout: float = 10.0,
        retry: tuple[float, float] = (10.0, 300.0),
        on_change: Callable[[Cause | None], None] = lambda cause: None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.topic = echo_topic(school_id, device_id)
        self._publish = publish
        self.echo_timeout = echo_timeout
        self.retry = retry
        self._on_change = on_change
        self._clock = clock
        self._rng = rng or random.Random()
        self.state = PENDING
        self.cause: Cause | None = None
        self._mqtt_version = 5
        self._settings: BrokerSettings | None = None
        self._mid: int | None = None
        self._nonce = b""
        self._deadline: float | None = None  # 3.1.1: the echo must be back by then
        self._due = 0.0
        self._delay = retry[0]
        self._first = True

    @property
    def proven(self) -> bool:
        return self.state == PROVEN

    def connected(self, settings: BrokerSettings) -> None:
        """A new connection: nothing is proven on it yet."""
        self._settings = settings
        self._mqtt_version = settings.mqtt_version
        self.state = PENDING if self.state != REFUSED else REFUSED
        self._mid = None
        self._deadline = None
        self._due = self._clock()

    def pump(self) -> float | None:
        """Send the echo when it is due; seconds until something is due, or None."""
        if self.state == PROVEN:
            return None
        now = self._clock()
        if self._deadline is not None:
            if now < self._deadline:
                return self._deadline - now
            self._refuse(NOT_DELIVERED_BACK)
            now = self._clock()
        if self._mid is not None:
            return None  # the PUBACK is still on its way
        if now < self._due:
            return self._due - now
        self._nonce = secrets.token_hex(8).encode()
        self._mid = self._publish(self.topic, self._nonce)
        if self._mid is None:
            self._due = now + 1.0
            return 1.0
        return None

    def on_published(self, mid: int, ok: bool, reason: str) -> bool:
        """The broker's answer to a publish; True when it was the echo's."""
        if mid != self._mid:
            return False
        self._mid = None
        if not ok:
            self._refuse(reason)
        elif self._mqtt_version == 5:
            self._prove()  # an MQTT 5 PUBACK without a failure code: the ACL let it through
        else:
            self._deadline = self._clock() + self.echo_timeout
        return True

    def on_echo(self, payload: bytes) -> None:
        """A message on the echo topic came back: ours proves delivery."""
        if self._nonce and payload == self._nonce:
            self._deadline = None
            self._prove()

    def refused(self, topic: str, reason: str) -> None:
        """The broker refused a report (MQTT 5 reason code): stop and prove again later."""
        self._refuse(reason, topic)

    def disconnected(self) -> None:
        self._mid = None
        self._deadline = None
        if self.state == PROVEN:
            self.state = PENDING

    def _prove(self) -> None:
        was, self.state = self.state, PROVEN
        self._delay = self.retry[0]
        if was == REFUSED:
            log.info("the broker accepts this device's reports again")
        if was == REFUSED or self._first:
            # the first proof also clears a refusal an earlier run recorded
            self._first = False
            self.cause = None
            self._on_change(None)

    def _refuse(self, reason: str, topic: str | None = None) -> None:
        assert self._settings is not None
        cause = topic_cause(self._settings, topic or self.topic, reason)
        self._deadline = None
        self._mid = None
        wait = self._delay * (0.75 + 0.5 * self._rng.random())
        self._due = self._clock() + wait
        self._delay = min(self._delay * 2, self.retry[1])
        changed = self.state != REFUSED or self.cause != cause
        self.state = REFUSED
        self.cause = cause
        if changed:
            log.warning(
                "%s. Reports stay in the outbox; trying again in %.0f s", cause, wait
            )
            self._on_change(cause)
