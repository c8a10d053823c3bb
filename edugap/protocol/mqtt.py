"""Broker settings and the paho-mqtt v2 client factory shared by agent, collector and simulator."""

from __future__ import annotations

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
