"""`edugap simulate`: publish a simulated fleet's reports and write the matching registry CSV."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from edugap.collector.demo.bulk_publish import Publisher, PublishError, PublishResult
from edugap.collector.demo.fleet import build_fleet, write_registry_file
from edugap.collector.demo.simulate import Plan, fleet_reports, plan_now
from edugap.protocol.mqtt import BrokerUrlError, parse_broker_url


# argparse types; `edugap demo` uses them too.
def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _utc_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` command."""
    p = subparsers.add_parser(
        "simulate",
        help="publish reports of a simulated fleet of schools",
        description="Publish protocol-valid reports (QoS 1) for a synthetic fleet of schools "
        "spread over Vietnam's 34 provinces, backdated over the last --days, and write the "
        "matching registry CSV. The same --seed gives the same registry and reports.",
    )
    p.add_argument("--schools", type=count, required=True, metavar="N", help="number of schools")
    p.add_argument(
        "--devices-per-school",
        type=count,
        default=2,
        metavar="M",
        help="agents per school (default 2)",
    )
    p.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        metavar="URL",
        help="broker URL (default mqtt://127.0.0.1:1883)",
    )
    p.add_argument(
        "--mqtt-version",
        type=int,
        choices=(5, 3),
        default=5,
        help="5 (default), or 3 for MQTT 3.1.1 brokers",
    )
    p.add_argument(
        "--rate",
        type=non_negative,
        default=0.0,
        metavar="R",
        help="reports per second at most (0: no limit)",
    )
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument(
        "--registry-out", type=Path, metavar="FILE.csv", help="write the registry CSV here"
    )
    p.add_argument(
        "--days",
        type=non_negative,
        default=7.0,
        metavar="D",
        help="spread reports over this many days (7)",
    )
    p.add_argument(
        "--tests-per-day",
        type=non_negative,
        default=2.0,
        metavar="N",
        help="speed tests per school per day (2)",
    )
    p.add_argument(
        "--heartbeats-per-day",
        type=non_negative,
        metavar="N",
        default=2.0,
        help="hourly heartbeats per school per day (2)",
    )
    p.add_argument(
        "--now",
        type=_utc_time,
        metavar="TIME",
        help="pretend it is this UTC time (for repeatable payloads)",
    )
    p.add_argument(
        "--connect-timeout",
        type=non_negative,
        metavar="SECONDS",
        default=15.0,
        help="give up when the broker does not answer within this many seconds (15)",
    )
    p.add_argument(
        "--no-publish", action="store_true", help="generate and count the reports, publish none"
    )
    p.set_defaults(func=run)


def _say(err: TextIO | None, text: str) -> None:
    print(f"simulate: {text}", file=err or sys.stderr, flush=True)


def run(args: argparse.Namespace, err: TextIO | None = None) -> int:
    """Build the fleet, write the registry, publish (or count) the reports."""
    if args.devices_per_school < 1:
        _say(err, f"--devices-per-school must be at least 1, got {args.devices_per_school}")
        return 2
    try:
        settings = parse_broker_url(args.broker, mqtt_version=args.mqtt_version)
    except BrokerUrlError as e:
        _say(err, f"--broker: {e}")
        return 2
    fleet = build_fleet(args.schools, args.devices_per_school, seed=args.seed)
    if args.registry_out:
        rows = write_registry_file(args.registry_out, (s.school for s in fleet))
        _say(err, f"wrote {rows} schools to {args.registry_out}")
    plan = Plan(
        now=args.now or plan_now(),
        days=args.days,
        tests_per_day=args.tests_per_day,
        heartbeats_per_day=args.heartbeats_per_day,
    )
    done = [0]

    def on_school(n: int) -> None:
        done[0] = n

    messages = fleet_reports(fleet, plan, seed=args.seed, on_school=on_school)
    if args.no_publish:
        count = sum(1 for _ in messages)
        _say(err, f"generated {count} reports for {len(fleet)} schools (not published)")
        return 0

    def progress(r: PublishResult) -> None:
        _say(
            err,
            f"{r.sent} reports sent, {r.acked} acknowledged, "
            f"{done[0]}/{len(fleet)} schools, {r.rate:.0f}/s",
        )

    try:
        with Publisher(settings, connect_timeout=args.connect_timeout) as publisher:
            result = publisher.publish_all(messages, rate=args.rate, progress=progress)
    except PublishError as e:
        _say(err, str(e))
        return 1
    _say(
        err,
        f"published {result.sent} reports for {len(fleet)} schools to {settings.url} "
        f"in {result.seconds:.1f}s ({result.rate:.0f}/s), {result.failed} refused",
    )
    return 1 if result.failed else 0
