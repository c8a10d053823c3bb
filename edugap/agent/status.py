"""`edugap-agent status`: what the agent kept, delivered and dropped; can it reach the broker."""

from __future__ import annotations

import queue
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from edugap.agent import state
from edugap.agent.config import AgentConfig
from edugap.agent.config_values import load_zone


def broker_check(config: AgentConfig, device_id: str, timeout: float) -> tuple[bool, str]:
    """Connect once with the agent's credentials (its own client id); (reachable, detail)."""
    from edugap.protocol.mqtt import connect_properties, new_client

    settings = config.broker.settings()
    # a different client id: reusing the service's would disconnect the running service
    client = new_client(settings, client_id=f"edugap-agent-{device_id}-status")
    results: queue.Queue[str] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: results.put("" if not rc.is_failure else str(rc))
    started = time.monotonic()
    try:
        client.connect_async(
            settings.host,
            settings.port,
            **connect_properties(settings, True),  # type: ignore[arg-type]
        )
        client.loop_start()
        outcome = results.get(timeout=timeout)
    except queue.Empty:
        return False, f"no answer from {settings.url} within {timeout:g} s"
    except (OSError, ValueError) as e:
        return False, f"{settings.url}: {e}"
    finally:
        client.disconnect()
        client.loop_stop()
    if outcome:
        return False, f"{settings.url} refused the connection: {outcome}"
    return True, f"{settings.url} (connected in {(time.monotonic() - started) * 1000:.0f} ms)"


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
    """Print what `edugap-agent status` shows; 0 when the broker accepts us, else 1."""
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
    reachable, detail = broker_check(config, device, timeout)
    print(f"broker:        {'reachable' if reachable else 'NOT reachable'}: {detail}")
    return 0 if reachable else 1
