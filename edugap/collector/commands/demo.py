"""`edugap demo`: everything on one machine with the embedded defaults; Ctrl-C stops it all."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from edugap.collector.commands.simulate import count, non_negative
from edugap.collector.demo.runner import Demo, DemoOptions


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 1-65535, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command."""
    d = DemoOptions()
    p = subparsers.add_parser(
        "demo",
        help="run broker, collector, a simulated fleet and real agents on this machine",
        description="Start an MQTT broker (Mosquitto if installed, else the embedded amqtt), "
        "the collector on SQLite in --dir, import a simulated registry, publish the simulated "
        "fleet's reports and start a few real agents; print the URLs and a shortfall summary; "
        "stop everything on Ctrl-C, SIGTERM or after --duration. See docs/demo.md.",
    )
    p.add_argument(
        "--schools",
        type=count,
        default=d.schools,
        metavar="N",
        help=f"simulated schools ({d.schools})",
    )
    p.add_argument(
        "--devices-per-school",
        type=count,
        metavar="M",
        default=d.devices_per_school,
        help=f"simulated agents per school ({d.devices_per_school})",
    )
    p.add_argument(
        "--port", type=_port, metavar="PORT", default=d.port, help=f"HTTP port ({d.port})"
    )
    p.add_argument(
        "--mqtt-port", type=_port, metavar="PORT", help="MQTT broker port (default: a free port)"
    )
    p.add_argument(
        "--dir", type=Path, metavar="DIR", default=d.dir, help=f"demo directory (./{d.dir}/)"
    )
    p.add_argument(
        "--duration",
        type=non_negative,
        metavar="SECONDS",
        help="stop by itself after this many seconds",
    )
    p.add_argument(
        "--seed", type=int, metavar="S", default=d.seed, help=f"simulation seed ({d.seed})"
    )
    p.add_argument(
        "--agents",
        type=count,
        metavar="N",
        default=d.agents,
        help=f"real agents to start ({d.agents})",
    )
    p.add_argument(
        "--broker-impl",
        choices=("auto", "mosquitto", "amqtt"),
        default=d.broker_impl,
        help="broker to run: auto (Mosquitto if installed, else amqtt), mosquitto or amqtt",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or --duration."""
    if args.devices_per_school < 1:
        print("edugap demo: --devices-per-school must be at least 1", file=sys.stderr)
        return 2
    options = DemoOptions(
        dir=args.dir,
        schools=args.schools,
        devices_per_school=args.devices_per_school,
        port=args.port,
        mqtt_port=args.mqtt_port,
        seed=args.seed,
        duration=args.duration,
        broker_impl=args.broker_impl,
        agents=args.agents,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return Demo(options, sys.stdout, stop).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
