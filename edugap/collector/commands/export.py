"""`edugap export shortages`: the shortage list under the policy, as CSV, XLSX, GeoJSON or JSON."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edugap.collector.commands.common import add_db_argument, db_url, open_store
from edugap.collector.commands.policy import add_policy_argument, load_from_args
from edugap.collector.export import (
    DIALECTS,
    FORMATS,
    KIND_ANY,
    LANGUAGES,
    ExportError,
    ExportOptions,
    Filters,
    download_name,
    write_shortages,
)
from edugap.collector.model import NEEDS, SHORTFALL_KINDS, StoreError
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import PolicyError
from edugap.collector.safetext import terminal
from edugap.protocol.messages import utcnow


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("export", help="export shortage lists", description=__doc__)
    sub = parser.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    short = sub.add_parser(
        "shortages",
        help="one row per school, highest priority first",
        description="Evaluate the policy over the store now and write one row per school "
        "(measured need first, then by priority). Planners: use XLSX (Vietnamese headers, a "
        "budget and a survey sheet, province totals). Progress goes to stderr. A filter that "
        "names an unknown place is an error (exit 2) with the closest known names.",
    )
    short.add_argument(
        "--format",
        choices=list(FORMATS),
        default=None,
        help="output format (default: from the -o file's extension, else csv)",
    )
    short.add_argument("--province", help="only this province (accents and case ignored)")
    short.add_argument("--commune", help="only this commune (accents and case ignored)")
    short.add_argument("--level", help="only this school level")
    short.add_argument(
        "--kind",
        choices=[*SHORTFALL_KINDS, KIND_ANY],
        help="only schools with this shortfall ('any': at least one)",
    )
    short.add_argument(
        "--need",
        choices=NEEDS,
        help="only this list: 'measured' (the budget: need found from evidence), 'assumed' "
        "(survey or enrol: no evidence), 'none'",
    )
    short.add_argument(
        "--lang", choices=LANGUAGES, default="vi", help="XLSX headers and sheets (default: vi)"
    )
    short.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="standard",
        help="CSV: 'standard' (',' and decimal point) or 'excel-vn' (';' and decimal comma, "
        "what Excel and LibreOffice expect on Vietnamese settings)",
    )
    add_db_argument(short)
    add_policy_argument(short)
    short.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file ('-' for stdout; default: a name that carries the filters and the "
        "date, e.g. shortages_cao-bang_computers_2026-03-02.xlsx)",
    )
    short.set_defaults(func=shortages_command)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output or "").suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else "csv"


def _progress(done: int, total: int) -> None:
    print(f"exported {done}/{total} schools", file=sys.stderr)


def shortages_command(args: argparse.Namespace) -> int:
    fmt = _format(args)
    try:
        policy = load_from_args(args).policy
    except PolicyError as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        store = open_store(db_url(args), create=False)
        try:
            snapshot = evaluate(store, policy, utcnow())
        finally:
            store.close()
    except StoreError as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    print(
        f"evaluated {len(snapshot.schools)} schools in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    filters = Filters(args.province, args.commune, args.level, args.kind, args.need)
    options = ExportOptions(lang=args.lang, dialect=args.dialect)
    output = args.output or download_name(filters, fmt, snapshot)
    try:
        if output == "-":
            count = write_shortages(snapshot, fmt, sys.stdout.buffer, filters, _progress, options)
            sys.stdout.buffer.flush()
        else:
            path = Path(output)
            partial = path.with_name(path.name + ".partial")
            try:
                with partial.open("wb") as out:
                    count = write_shortages(snapshot, fmt, out, filters, _progress, options)
                partial.replace(path)  # a reader never sees half a file
            finally:
                partial.unlink(missing_ok=True)  # only left after a failure
    except ExportError as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {terminal(output)}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {count} schools as {fmt} to {terminal(output)}", file=sys.stderr)
    if count == 0:
        print(
            f"no school matches {terminal(filters.describe())}: the file has no rows",
            file=sys.stderr,
        )
    return 0
