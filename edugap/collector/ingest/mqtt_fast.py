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
- `_packet_read` (private) decodes a QoS 0/1 PUBLISH that lies whole in the buffer straight
  from it, without paho's per-packet bookkeeping and, for MQTT 5, without building an empty
  Properties object; any other packet (CONNACK, SUBACK, QoS 2, a PUBLISH with properties or
  only partly received) goes through paho's own code, fed from the buffer.

Everything else (connect, TLS, keepalive, acks, reconnects, callbacks) is paho's. The private
names used are checked by `missing_internals()`; if a paho release drops or reshapes them,
`fast_client` returns the plain client from `edugap.protocol.mqtt.new_client` instead. Ingest
then runs about 3x slower, so it is not silent: the collector logs a WARNING at start naming
the paho version and what is missing (`fallback_warning()`), and `/metrics` says which reader
runs (`edugap_collector_ingest_reader_info{reader="fast"|"paho"}`).
"""

from __future__ import annotations

import inspect
import struct
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edugap.protocol.mqtt import BrokerSettings, new_client

READ_CHUNK = 64 * 1024
_U16 = struct.Struct("!H")
_PUBLISH = 0x30
_OK = MQTTErrorCode.MQTT_ERR_SUCCESS
# paho internals this module relies on: methods (with their parameters after self) ...
PRIVATE_METHODS = {
    "_sock_recv": ["bufsize"],
    "_packet_read": [],
    "_handle_publish": [],
    "_handle_on_message": ["message"],
    "_send_puback": ["mid"],
    "_easy_log": ["level", "fmt", "args"],
}
# ... and attributes of a client instance
PRIVATE_ATTRIBUTES = (
    "_sock",
    "_in_packet",
    "_protocol",
    "_manual_ack",
    "_userdata",
    "_in_callback_mutex",
    "_msgtime_mutex",
    "_last_bytes_received",
)


#: The two readers ingest can run, as `/metrics` names them.
FAST, PAHO = "fast", "paho"


def paho_version() -> str:
    """The installed paho-mqtt's version."""
    try:
        return version("paho-mqtt")
    except PackageNotFoundError:
        return str(getattr(mqtt, "__version__", "unknown"))


def missing_internals() -> list[str]:
    """What FastClient relies on that the installed paho lacks or has reshaped ([] if none)."""
    missing = []
    for name, params in PRIVATE_METHODS.items():
        method = getattr(mqtt.Client, name, None)
        if method is None:
            missing.append(f"Client.{name}")
        elif list(inspect.signature(method).parameters)[1:] != params:
            missing.append(f"Client.{name}({', '.join(params)})")
    probe = mqtt.Client(CallbackAPIVersion.VERSION2)
    missing += [f"Client().{name}" for name in PRIVATE_ATTRIBUTES if not hasattr(probe, name)]
    packet = getattr(probe, "_in_packet", None)
    if not (isinstance(packet, dict) and packet.get("command") == 0):
        missing.append("Client()._in_packet as a dict with 'command'")
    return missing


def fast_supported() -> bool:
    """True if the installed paho still has the private parts FastClient relies on."""
    return not missing_internals()


def reader_of(client: mqtt.Client) -> str:
    """The reader a client runs: FAST (FastClient) or PAHO (paho's own)."""
    return FAST if isinstance(client, FastClient) else PAHO


def fallback_warning() -> str | None:
    """Why ingest runs plain paho instead of FastClient, for the log; None when it need not."""
    missing = missing_internals()
    if not missing:
        return None
    return (
        f"paho-mqtt {paho_version()} lacks what the fast MQTT reader relies on "
        f"(missing or changed: {', '.join(missing)}): ingest runs paho's own reader, about 3x "
        "slower; use the paho-mqtt version edugap was released with, or update "
        "edugap/collector/ingest/mqtt_fast.py"
    )


class FastClient(mqtt.Client):
    """paho's Client with buffered socket reads and a cheaper PUBLISH decode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None  # the socket the buffer was read from
        self._filtered = False  # message_callback_add used: let paho match topics

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def buffered(self) -> int:
        """Bytes read from the socket but not yet handed to paho."""
        if self._rsock is not self._sock:
            return 0
        return len(self._rbuf) - self._rpos

    # --- reading ---------------------------------------------------------------------------

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

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's loop_read, repeated while whole or partial packets wait in the buffer."""
        rc = super().loop_read(max_packets)
        while rc == _OK and self._sock is not None and self.buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _packet_read(self) -> MQTTErrorCode:
        if self._in_packet["command"] != 0 or self._rsock is not self._sock:
            return super()._packet_read()  # paho is midway through a packet, or nothing buffered
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        if pos >= end or buf[pos] & 0xF0 != _PUBLISH:
            return super()._packet_read()
        # remaining length: 1 to 4 bytes, 7 bits each, low first
        at, length, shift = pos + 1, 0, 0
        while True:
            if at >= end or shift > 21:
                return super()._packet_read()  # partly received, or malformed: paho decides
            byte = buf[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if at + length > end:
            return super()._packet_read()
        self._rpos = at + length  # consumed before on_message runs, even if it raises
        rc = self._publish(buf[pos], buf, at, at + length)
        if rc is None:
            self._rpos = pos
            return super()._packet_read()
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        rc = self._publish(self._in_packet["command"], packet, 0, len(packet))
        return super()._handle_publish() if rc is None else rc

    def _publish(
        self, header: int, buf: bytes | bytearray, start: int, end: int
    ) -> MQTTErrorCode | None:
        """Deliver a QoS 0/1 PUBLISH held in buf[start:end]; None to leave it to paho."""
        qos = (header & 0x06) >> 1
        if qos == 2 or end - start < 2:
            return None
        (topic_len,) = _U16.unpack_from(buf, start)
        at = start + 2 + topic_len
        if topic_len == 0 or at + (2 if qos else 0) > end:
            return None  # empty topic (alias) or malformed: paho's way
        mid = 0
        if qos:
            (mid,) = _U16.unpack_from(buf, at)
            at += 2
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            if at >= end or buf[at] != 0:
                return None  # has properties: paho builds them
            at += 1
        message = mqtt.MQTTMessage(mid=mid, topic=bytes(buf[start + 2 : start + 2 + topic_len]))
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = bytes(buf[at:end])
        message.timestamp = mqtt.time_func()
        self._deliver(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return _OK

    def _deliver(self, message: mqtt.MQTTMessage) -> None:
        """on_message, as paho calls it, skipping its topic matcher when nothing is filtered."""
        if self._filtered:
            self._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise


def fast_client(
    settings: BrokerSettings, client_id: str, clean_start: bool = True, manual_ack: bool = False
) -> mqtt.Client:
    """`edugap.protocol.mqtt.new_client`, as a FastClient when the installed paho allows it
    (checked at each call, once per collector start: a test can reshape paho first)."""
    client_class = FastClient if fast_supported() else mqtt.Client
    return new_client(settings, client_id, clean_start, manual_ack, client_class=client_class)
