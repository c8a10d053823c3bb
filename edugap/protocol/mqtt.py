"""Broker settings and the paho-mqtt v2 client factory shared by agent, collector and simulator."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how to reach the MQTT broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    mqtt_version: int = 5  # 5, or 3 for MQTT 3.1.1
    keepalive: int = 60

    @property
    def url(self) -> str:
        """The URL form, without the password (safe for logs)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str, **extra: object) -> BrokerSettings:
    """Parse `mqtt://[user[:password]@]host[:port]` or `mqtts://...` into settings."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r} has no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as e:
        raise BrokerUrlError(f"broker URL {url!r}: {e}") from None
    return BrokerSettings(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **extra,  # type: ignore[arg-type]
    )


ClientFactory = Callable[..., mqtt.Client]


def new_client(
    settings: BrokerSettings,
    client_id: str,
    clean_start: bool = True,
    manual_ack: bool = False,
    *,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A configured but unconnected paho client (callback API v2, MQTT 5 unless asked for 3.1.1).

    With `clean_start=False` the broker keeps the session (subscriptions and queued QoS 1
    messages) while the client is away. With `manual_ack=True` QoS 1 messages are acknowledged
    only when the caller calls `client.ack(mid, qos)` (after its write is durable).
    `client_class` may be a subclass of paho's Client (the collector reads with its own).
    """
    if settings.mqtt_version == 5:
        client = client_class(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = client_class(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=clean_start,
            manual_ack=manual_ack,
        )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=1, max_delay=120)
    return client


def connect_properties(settings: BrokerSettings, clean_start: bool) -> dict[str, object]:
    """Keyword arguments for `client.connect_async` matching the protocol version.

    For MQTT 5 a persistent session needs a session expiry interval; one week lets a collector
    or agent be away across a long outage without the broker forgetting it.
    """
    kwargs: dict[str, object] = {"keepalive": settings.keepalive}
    if settings.mqtt_version == 5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean_start else 7 * 24 * 3600
        kwargs["clean_start"] = clean_start
        kwargs["properties"] = props
    return kwargs


# --- why a connection failed --------------------------------------------------------------

#: Kinds of connection failure, each with its own message and hint (both programs use them).
CAUSE_KINDS = (
    "certificate",  # the broker's certificate did not verify (CA or name)
    "tls",  # the TLS handshake failed for another reason (often: not a TLS port)
    "refused",  # nothing listens on the port (TCP connection refused)
    "host_not_found",  # DNS has no such host
    "unreachable",  # no route to the broker's network
    "timed_out",  # no answer at all
    "closed",  # the broker hung up before answering the MQTT handshake
    "not_authorised",  # bad user name or password, or a topic the ACL refuses
    "protocol",  # the broker refused the MQTT version
    "unavailable",  # the broker said it is unavailable or busy
    "tls_files",  # a CA, certificate or key file cannot be read
    "other",
)

# CONNACK reason codes (MQTT 5 values; paho maps MQTT 3.1.1 return codes onto them)
_BAD_CREDENTIALS = {0x86, 0x87, 0x8A, 0x8C}  # bad user/password, not authorised, banned, auth
_BAD_PROTOCOL = {0x84, 0x01}  # unsupported protocol version
_UNAVAILABLE = {0x88, 0x89}  # server unavailable, server busy


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a connection to the broker failed: what happened, and one line on what to check."""

    kind: str  # one of CAUSE_KINDS
    detail: str
    hint: str

    def __str__(self) -> str:
        return f"{self.detail}. {self.hint}"


def connect_cause(
    settings: BrokerSettings, *, error: BaseException | None = None, reason: object = None
) -> Cause:
    """The cause of a failed connection attempt: from the exception paho's connect raised
    (`error`), from the CONNACK's refusal (`reason`, a paho ReasonCode or int), or, with
    neither, a connection the broker closed before answering."""
    where = f"{settings.host}:{settings.port}"
    if error is not None:
        return _error_cause(settings, error)
    if reason is not None:
        code = int(getattr(reason, "value", reason))  # type: ignore[call-overload]
        if code in _BAD_CREDENTIALS:
            who = f"user {settings.username!r}" if settings.username else "a client without user"
            return Cause(
                "not_authorised",
                f"{where} refused {who} as not authorised ({reason})",
                "Check broker.username and broker.password (the user name is the school id, "
                "as the broker's ACL expects)",
            )
        if code in _BAD_PROTOCOL:
            return Cause(
                "protocol",
                f"{where} refused MQTT {settings.mqtt_version} ({reason})",
                "Set broker.mqtt_version = 3 for a broker that speaks only MQTT 3.1.1",
            )
        if code in _UNAVAILABLE:
            return Cause(
                "unavailable",
                f"{where} is unavailable or busy ({reason})",
                "Nothing to change here: it is tried again; if it lasts, ask the broker's operator",
            )
        return Cause(
            "other", f"{where} refused the connection ({reason})", "See the broker's log"
        )
    if settings.tls:
        hint = "The broker may refuse this computer's address or have too many connections"
    else:
        hint = (
            f"If {settings.port} is a TLS port (8883 usually is), use an mqtts:// URL and "
            "broker.ca_file"
        )
    return Cause("closed", f"{where} closed the connection before answering", hint)


def _error_cause(settings: BrokerSettings, error: BaseException) -> Cause:
    where = f"{settings.host}:{settings.port}"
    if isinstance(error, ssl.SSLCertVerificationError):
        why = error.verify_message or str(error)
        if "mismatch" in why.lower():
            hint = (
                f"The certificate does not name {settings.host}: use the host name the "
                "certificate was made for in broker.url"
            )
        else:
            hint = (
                "Check that broker.ca_file is the CA that signed the broker's certificate "
                "(without it the system's CA store is used)"
            )
        return Cause("certificate", f"certificate verification failed for {settings.host}: {why}",
                     hint)  # fmt: skip
    if isinstance(error, socket.gaierror):
        return Cause(
            "host_not_found",
            f"host {settings.host} not found ({error.strerror or error})",
            "Check the host name in broker.url and this computer's DNS (try: nslookup "
            f"{settings.host})",
        )
    if isinstance(error, ConnectionRefusedError):
        return Cause(
            "refused",
            f"connection refused by {where}",
            "Nothing listens on that port: check the port in broker.url and that the broker "
            "runs; a firewall may also refuse",
        )
    if isinstance(error, TimeoutError):
        return Cause(
            "timed_out",
            f"no answer from {where}",
            f"A firewall may drop the traffic or the link is down: check that port "
            f"{settings.port} is open from here to the broker",
        )
    if settings.tls and isinstance(error, ssl.SSLError | ConnectionResetError | EOFError):
        return Cause(
            "tls",
            f"TLS handshake with {where} failed ({_reason(error)})",
            f"Is {settings.port} the broker's TLS port? mqtts:// needs its TLS listener "
            "(usually 8883), mqtt:// its plain one",
        )
    if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return Cause(
            "unreachable",
            f"no route to {where} ({error.strerror})",
            "This computer has no network path to the broker: check its link and gateway",
        )
    return Cause("other", f"cannot connect to {where}: {_reason(error)}", "See the log above")


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None)
    return str(reason or error or type(error).__name__)


def file_cause(error: OSError) -> Cause:
    """A TLS file (CA, certificate, key) that cannot be read when the client is made."""
    name = error.filename or "a TLS file"
    return Cause(
        "tls_files",
        f"cannot read {name} ({error.strerror or error})",
        "Check broker.ca_file, broker.cert_file and broker.key_file, and that this program "
        "may read them",
    )


def topic_cause(settings: BrokerSettings, topic: str, reason: object = "not authorised") -> Cause:
    """A publish the broker refused (MQTT 5 reason code) or never delivered back (3.1.1)."""
    return Cause(
        "not_authorised",
        f"not authorised for topic {topic} (user {settings.username!r}: {reason})",
        "The broker's ACL lets a user publish only under edugap/v1/<user name>/: "
        "school.school_id must equal broker.username",
    )
