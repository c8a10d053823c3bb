"""A paho-mqtt v2 client that reads the socket in large chunks, for the collector's ingest.

paho reads every packet with several small `recv` calls (1 byte of header, 1 to 4 of length,
then the rest), each after a `select`, and for MQTT 5 builds a Properties object for every
PUBLISH even when it carries none (about 18 us each here). At tens of thousands of messages a
second that per-message overhead, not the broker or the store, is what limits ingest.

`FastClient` changes only how bytes come in:

- `_sock_recv` (private in paho) reads up to 64 KiB per syscall into a buffer and serves
  paho's small reads from it;
- `loop_read` (public) keeps handling packets while that buffer holds bytes, because paho's
  loop only calls it again after `select` says the socket is readable, and buffered bytes
  are invisible to `select`;
- `_handle_publish` (private) skips building an empty Properties object for an MQTT 5
  QoS 0/1 PUBLISH with no properties; anything else goes through paho's own code.

Everything else (connect, TLS, keepalive, acks, reconnects, callbacks) is paho's. The private
names used are checked by `fast_supported()`; if a paho release drops or reshapes them,
`fast_client` returns the plain client from `agent.mqtt.new_client` instead.
"""

from __future__ import annotations

import inspect
import logging
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from agent.mqtt import BrokerSettings, new_client

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
_U16 = struct.Struct("!H")
# paho internals this module relies on: name -> parameters after self
PRIVATE_API = {
    "_sock_recv": ["bufsize"],
    "_handle_publish": [],
    "_handle_on_message": ["message"],
    "_packet_read": [],
}


def fast_supported() -> bool:
    """True if the installed paho still has the private methods FastClient overrides."""
    for name, params in PRIVATE_API.items():
        method = getattr(mqtt.Client, name, None)
        if method is None:
            return False
        if list(inspect.signature(method).parameters)[1:] != params:
            return False
    probe = mqtt.Client(CallbackAPIVersion.VERSION2)
    return isinstance(getattr(probe, "_in_packet", None), dict) and hasattr(probe, "_sock")


class FastClient(mqtt.Client):
    """paho's Client with buffered socket reads and a cheaper MQTT 5 PUBLISH decode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None  # the socket the buffer was read from

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: old bytes belong to the old one
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            # raises BlockingIOError when nothing is there, as paho expects
            data = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def buffered(self) -> int:
        """Bytes read from the socket but not yet handed to paho."""
        if self._rsock is not self._sock:
            return 0
        return len(self._rbuf) - self._rpos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's loop_read, repeated while whole or partial packets wait in the buffer."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self.buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if self._protocol != MQTTProtocolVersion.MQTTv5 or qos == 2:
            return super()._handle_publish()
        (topic_len,) = _U16.unpack_from(packet, 0)
        at = 2 + topic_len
        mid = 0
        if qos:
            if len(packet) < at + 2:
                return super()._handle_publish()  # paho reports the malformed packet
            (mid,) = _U16.unpack_from(packet, at)
            at += 2
        if len(packet) <= at or packet[at] != 0:
            return super()._handle_publish()  # has properties (or is malformed): paho's way
        message = mqtt.MQTTMessage(mid=mid, topic=bytes(packet[2 : 2 + topic_len]))
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = bytes(packet[at + 1 :])
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def fast_client(
    settings: BrokerSettings, client_id: str, clean_start: bool = True, manual_ack: bool = False
) -> mqtt.Client:
    """`agent.mqtt.new_client`, as a FastClient when the installed paho allows it."""
    client_class = FastClient if _SUPPORTED else mqtt.Client
    return new_client(settings, client_id, clean_start, manual_ack, client_class=client_class)


_SUPPORTED = fast_supported()
if not _SUPPORTED:
    log.warning(
        "paho-mqtt %s changed the internals collector.mqtt_fast relies on; "
        "using the plain (slower) client",
        getattr(mqtt, "__version__", "?"),
    )
