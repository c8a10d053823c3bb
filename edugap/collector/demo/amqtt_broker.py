"""The embedded MQTT broker for machines without Mosquitto: amqtt (MQTT 3.1.1) on one port.

Run as `python -m edugap.collector.demo.amqtt_broker --port N`; stops cleanly on SIGTERM or SIGINT.
Only the demo uses it: production runs Mosquitto (see deploy/).

amqtt does not implement shared subscriptions, which a group of collectors uses
(`$share/<group>/edugap/v1/+/+/+`, `ingest.shared`). With one collector a shared subscription
delivers exactly what the plain filter does, so this broker strips the `$share/<group>/`
prefix. Several collectors in one group would each get every message here: scale-out needs
Mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any


def broker_config(host: str, port: int) -> dict[str, Any]:
    """One anonymous TCP listener; no $SYS topics, no packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


def plain_filter(topic_filter: str) -> str:
    """`$share/group/a/b` -> `a/b`; any other filter unchanged."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3 and parts[2]:
            return parts[2]
    return topic_filter


def _broker_class() -> Any:
    from amqtt.broker import Broker

    class SharingBroker(Broker):  # type: ignore[misc]
        """amqtt's broker, treating a shared subscription as the plain one (single member)."""

        async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
            topic_filter, qos = subscription
            code: int = await super().add_subscription((plain_filter(topic_filter), qos), session)
            return code

        def _del_subscription(self, a_filter: str, session: Any) -> int:
            removed: int = super()._del_subscription(plain_filter(a_filter), session)
            return removed

    return SharingBroker


async def serve(host: str, port: int) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    broker = _broker_class()(broker_config(host, port))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"amqtt broker listening on {host}:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    await broker.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m edugap.collector.demo.amqtt_broker`."""
    parser = argparse.ArgumentParser(description="embedded MQTT 3.1.1 broker (amqtt)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    # amqtt logs every connection at INFO; the demo's log only needs problems.
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
