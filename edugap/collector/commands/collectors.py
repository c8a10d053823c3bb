"""`edugap collectors`: the collectors of each group, and retiring one without losing its share.

Mosquitto has no way to list sessions, so the list is what each collector recorded in the store
(`edugap.collector.collectors`). A collector that stopped keeps its session at the broker: with a
shared subscription the broker still routes its share of the reports there, where they wait
until it comes back or the session expires (7 days) and they are gone. `retire` takes over
that session with the collector's own client id, stores what it queued, removes its
subscriptions so nothing more is routed there, and ends the session.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TextIO

from edugap.collector.collectors import RETIRED, CollectorRegistry, RetireError, client_id_for
from edugap.collector.commands.common import open_store
from edugap.collector.config import CollectorConfig, ConfigError, load_config
from edugap.collector.model import Store, StoreError
from edugap.collector.safetext import terminal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "collectors",
        help="list the collectors of each group; retire a stopped one",
        description="List the collectors that ran against the store, as each recorded itself "
        "(Mosquitto cannot list its sessions), or retire a stopped collector: take over its "
        "broker session, store what it queued, and end the session so that the broker routes "
        "its share of the reports to the others. Reads the same settings as `edugap serve`.",
    )
    _common_options(parser, None)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = sub.add_parser("list", help="the collectors and their state (the default)")
    _common_options(listing, argparse.SUPPRESS)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    shown = sub.add_parser(
        "client-id",
        help="print a collector's client id (a secret), to pin it before a password change",
        description="Print the MQTT client id that this configuration gives collector NAME "
        "(default: its ingest.name). It is derived from the broker password: put it in "
        "ingest.client_id before changing the password, so the session and what it queued "
        "stay. Treat it as a secret.",
    )
    _common_options(shown, argparse.SUPPRESS)
    shown.add_argument("name", metavar="NAME", nargs="?")
    retire = sub.add_parser(
        "retire",
        help="store a stopped collector's queued reports and end its session",
        description="NAME is the collector's ingest.name in this configuration's group. Its "
        "client id is derived from this configuration's broker credentials, as the collector "
        "itself did; give --client-id if it used an explicit ingest.client_id.",
    )
    _common_options(retire, argparse.SUPPRESS)
    retire.add_argument("name", metavar="NAME")
    retire.add_argument("--client-id", metavar="ID", help="the retired collector's client id")
    retire.add_argument("--force", action="store_true",
                        help="retire although it looks running, is not in the registry, or is "
                        "the group's last collector")  # fmt: skip
    retire.add_argument("--quiet-seconds", type=float, default=2.0, metavar="S",
                        help="done when no report came for this long (default: 2)")  # fmt: skip
    retire.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="give up after this long; the session stays (default: 600)",
    )
    parser.set_defaults(func=collectors_command, action=None, json=False)


def _common_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    # accepted before and after ACTION; after it, SUPPRESS keeps a value given before
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="the TOML configuration, as for edugap serve")  # fmt: skip
    parser.add_argument("--db", metavar="URL", default=default,
                        help="the store (default: db.url of the configuration)")  # fmt: skip


def collectors_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        cli = {"db_url": args.db}
        config = load_config(args.config, cli=cli)
        if args.action == "client-id":
            name = args.name or config.ingest_name
            mine = config.ingest_client_id if name == config.ingest_name else None
            out.write(
                client_id_for(config.broker_settings(), config.ingest_group, name, mine).value
            )
            out.write("\n")
            return 0
        store = open_store(config.db_url, create=False)
    except (ConfigError, StoreError) as e:
        print(f"edugap collectors: {terminal(e)}", file=sys.stderr)
        return 2
    try:
        if not isinstance(store, CollectorRegistry):
            db = terminal(config.db_url)
            print(f"edugap collectors: {db} keeps no registry", file=sys.stderr)
            return 2
        if args.action == "retire":
            return _retire_command(store, store, config, args, out)
        return _list(store, args.json, out)
    except (StoreError, RetireError) as e:
        print(f"edugap collectors: {terminal(e)}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _list(registry: CollectorRegistry, as_json: bool, out: TextIO) -> int:
    entries = registry.collectors()
    now = time.time()
    if as_json:
        for e in entries:
            out.write(json.dumps({**asdict(e), "condition": e.condition(now)}) + "\n")
        return 0
    if not entries:
        out.write("no collector has run against this store yet\n")
        return 0
    out.write(
        "As recorded by each collector in the store (Mosquitto cannot list its sessions).\n"
        f"{'group':<12} {'name':<20} {'state':<14} {'subscription':<12} {'host':<16} "
        f"{'pid':>7}  {'last seen':<20} client id\n"
    )
    for e in entries:
        line = (
            f"{e.group:<12} {e.name:<20} {e.condition(now):<14} "
            f"{'shared' if e.shared else 'own':<12} {e.host:<16} {e.pid:>7}  "
            f"{_when(e.last_seen_at):<20} {e.client_id_hash}"
        )
        out.write(terminal(line) + "\n")  # names and hosts come from the store: escape them
    return 0


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retire_command(
    store: Store,
    registry: CollectorRegistry,
    config: CollectorConfig,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    from edugap.collector.retire import check_retirable, retire  # paho and ingest: only here

    group, name = config.ingest_group, args.name
    client_id = client_id_for(config.broker_settings(), group, name, args.client_id)
    entries = registry.collectors()
    target = check_retirable(entries, group, name, client_id, args.force, time.time())
    share = registry.share_name(group)
    result = retire(
        store, config, client_id, share, quiet_seconds=args.quiet_seconds, timeout=args.timeout
    )
    registry.set_collector_state(group, name, RETIRED, time.time())
    if not result.session_present:
        out.write(
            f"collector {name!r} of group {group!r}: the broker had no session for it (it "
            "expired or was ended before): nothing was queued there\n"
        )
    else:
        out.write(
            f"collector {name!r} of group {group!r} retired: its session held "
            f"{result.received} report(s): {result.stored} stored, {result.duplicate} "
            f"duplicate, {result.rejected} rejected; the session is ended and the broker routes "
            "no more reports to it\n"
        )
    if target is None:
        out.write(f"({name!r} was not in the registry: retired with --force)\n")
    return 0
