"""`edugap rejects`: the latest messages ingest refused, newest first, with the reason."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from edugap.collector.commands.common import add_db_argument, db_url, open_store
from edugap.collector.model import Reject, StoreError
from edugap.collector.safetext import printable, terminal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rejects",
        help="list the latest rejected messages and why",
        description="List the latest messages that ingest rejected (newest first): when, the "
        "topic, the reason (bad_json, invalid, too_large, not_utf8, unknown_schema, "
        "topic_mismatch, bad_topic), the detail and the start of the payload. The store keeps "
        "the newest 5000.",
    )
    add_db_argument(parser)
    parser.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="how many (default: 20)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=rejects_command)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit {text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--limit {value} must be at least 1")
    return value


def rejects_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call: tests and callers may replace sys.stdout
    url = db_url(args)
    try:
        # a read-only command must not create an empty database where the operator mistyped
        store = open_store(url, create=False)
        try:
            rejects = store.recent_rejects(limit=args.limit)
        finally:
            store.close()
    except StoreError as e:
        print(f"edugap rejects: {terminal(e)}", file=sys.stderr)
        return 2
    # topics, details and payloads come from schools: escape what a terminal would obey
    if args.json:
        for r in rejects:
            line = json.dumps(_as_dict(r), ensure_ascii=False)
            out.write(printable(line, json=True) + "\n")
    elif not rejects:
        out.write(f"no rejected messages in {terminal(url)}\n")
    else:
        for r in rejects:
            out.write(
                f"{r.received_at:%Y-%m-%dT%H:%M:%SZ}  {terminal(r.reason):<15} "
                f"{terminal(r.topic)}\n"
                f"    {_one_line(r.detail, 200)}\n"
                f"    payload: {_one_line(r.payload_excerpt, 120)}\n"
            )
    return 0


def _as_dict(r: Reject) -> dict[str, str]:
    return {
        "received_at": r.received_at.isoformat(),
        "topic": r.topic,
        "reason": r.reason,
        "detail": r.detail,
        "payload_excerpt": r.payload_excerpt,
    }


def _one_line(text: str, width: int) -> str:
    flat = terminal(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"
