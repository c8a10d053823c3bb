"""`edugap-agent status`: what the agent kept, delivered and dropped; can it reach the broker."""

from __future__ import annotations

import queue
import secrets
import sqlite3
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edugap.agent import state
from edugap.agent.config import AgentConfig
from edugap.agent.config_values import load_zone

REACHABLE, REFUSED, UNREACHABLE = "reachable", "NOT delivering", "NOT reachable"


def broker_check(config: AgentConfig, device_id: str, timeout: float) -> tuple[str, str]:
    """Prove delivery as the service does (edugap.agent.roundtrip), with the agent's
    credentials and its own client id: connect, subscribe to the device's echo topic, publish
    there and see the broker accept it (MQTT 5 reason code) or deliver it back (MQTT 3.1.1).
    Returns (REACHABLE, REFUSED or UNREACHABLE; what happened, with a hint when it failed)."""
    from edugap.protocol.messages import echo_topic
    from edugap.protocol.mqtt import (
        connect_cause,
        connect_properties,
        file_cause,
        new_client,
        topic_cause,
    )

    settings = config.broker.settings()
    try:
        # a different client id: reusing the service's would disconnect the running service
        client = new_client(settings, client_id=f"edugap-agent-{device_id}-status")
    except (OSError, ssl.SSLError) as e:
        return UNREACHABLE, str(file_cause(e))
    topic = echo_topic(config.school_id, device_id)
    nonce = secrets.token_hex(8).encode()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: events.put(("connect", rc))
    client.on_connect_fail = lambda c, u: events.put(("fail", sys.exc_info()[1]))
    client.on_disconnect = lambda c, u, f, rc, p: events.put(("disconnect", rc))
    client.on_subscribe = lambda c, u, mid, rcs, p: events.put(("subscribed", rcs))
    client.on_publish = lambda c, u, mid, rc, p: events.put(("puback", rc))
    client.on_message = lambda c, u, m: events.put(("echo", bytes(m.payload)))
    started = time.monotonic()
    deadline = started + timeout
    stage = "connecting"
    try:
        client.connect_async(
            settings.host,
            settings.port,
            **connect_properties(settings, True),  # type: ignore[arg-type]
        )
        client.loop_start()
        while (left := deadline - time.monotonic()) > 0:
            try:
                kind, value = events.get(timeout=left)
            except queue.Empty:
                break
            if kind == "fail":
                return UNREACHABLE, str(connect_cause(settings, error=value or OSError("failed")))
            if kind == "connect" and value.is_failure:
                return UNREACHABLE, str(connect_cause(settings, reason=value))
            if kind == "disconnect" and stage == "connecting":
                return UNREACHABLE, str(connect_cause(settings))
            if kind == "connect":
                stage = "subscribing"
                client.subscribe(topic, qos=1)
            elif kind == "subscribed":
                stage = "publishing"
                client.publish(topic, nonce, qos=1)
            elif kind == "puback" and value.is_failure:
                return REFUSED, str(topic_cause(settings, topic, value))
            elif kind == "puback" and settings.mqtt_version == 3:
                stage = "echo"  # a 3.1.1 PUBACK proves nothing: wait for the message itself
            elif kind == "puback" or (kind == "echo" and value == nonce):
                took = (time.monotonic() - started) * 1000
                return REACHABLE, (
                    f"{settings.url} accepts this device's reports (round trip through "
                    f"{topic}, MQTT {settings.mqtt_version}, {took:.0f} ms)"
                )
    except (OSError, ValueError) as e:
        return UNREACHABLE, str(connect_cause(settings, error=e))
    finally:
        client.disconnect()
        client.loop_stop()
    if stage == "echo":
        from edugap.agent.roundtrip import NOT_DELIVERED_BACK

        return REFUSED, str(topic_cause(settings, topic, NOT_DELIVERED_BACK))
    if stage == "connecting":
        cause = connect_cause(settings, error=TimeoutError())
        return UNREACHABLE, f"{cause.detail} within {timeout:g} s. {cause.hint}"
    return UNREACHABLE, f"{settings.url} did not finish the round trip ({stage}) in {timeout:g} s"


def _ago(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    when = datetime.fromtimestamp(float(stamp), UTC).isoformat(timespec="seconds")
    return f"{when} ({max(0.0, time.time() - float(stamp)):.0f} s ago)"


def _held(since: float, retry_at: float | None) -> str:
    """Why reports wait although the broker is reachable, and when the next try is."""
    retry = ""
    if retry_at is not None:
        retry = f"; next try in {max(0.0, float(retry_at) - time.time()):.0f} s"
    return (
        f"since {_ago(since)}: no collector is subscribed at the broker (it answers 'No "
        f"matching subscribers'), so reports stay in the outbox{retry}"
    )


def report(config: AgentConfig, timeout: float) -> int:
    """Print what `edugap-agent status` shows; 0 when the broker accepts this device's
    reports, else 1."""
    from edugap.agent.outbox import FILE_NAME, read_stats

    state_dir = Path(config.state_dir)
    device = state.read_device_id(state_dir) or state.NOT_INSTALLED
    print(f"config:        {config.source}")
    print(f"school:        {config.school_id}{'' if config.enrolled else ' (not enrolled)'}")
    print(f"device:        {device}")
    print(f"state dir:     {state_dir}")
    path = state_dir / FILE_NAME
    try:
        stats = read_stats(path)
    except FileNotFoundError:
        print(f"outbox:        none yet ({path} does not exist: has the service run?)")
    except PermissionError as e:
        print(f"outbox:        cannot read {path} ({e.strerror}): run as root / administrator")
    except (OSError, sqlite3.Error) as e:
        print(f"outbox:        cannot read {path}: {e}")
    else:
        oldest = f", oldest measured {stats.oldest_measured_at}" if stats.depth else ""
        print(
            f"outbox:        {stats.depth} report(s) waiting "
            f"({stats.size_bytes / 1024:.1f} KiB){oldest}"
        )
        print(
            f"dropped:       {stats.dropped_pending} not yet reported, "
            f"{stats.dropped_total} in total"
        )
        if stats.held_since is not None:
            print(f"held:          {_held(stats.held_since, stats.held_retry_at)}")
        if stats.refused_since is not None:
            print(
                f"refused:       since {_ago(stats.refused_since)} the broker refuses this "
                f"device's reports (they stay in the outbox): {stats.refused_cause}"
            )
        print(f"delivered:     {stats.acked_total} report(s)")
        print(f"last publish:  {_ago(stats.last_ack_at)}")
        print(f"last report:   {_ago(stats.last_enqueued_at)}")
    today = datetime.now(load_zone(config.schedule.timezone)).date()
    usage = state.read_usage(state_dir, today)
    print(
        f"speed tests:   {usage.tests} today, {usage.bytes_used / 1e6:.0f} MB of "
        f"{config.bandwidth.daily_budget_mb:g} MB budget"
        + ("" if config.bandwidth.role else " (bandwidth role off)")
    )
    verdict, detail = broker_check(config, device, timeout)
    print(f"broker:        {verdict}: {detail}")
    return 0 if verdict == REACHABLE else 1
