"""`edugap schools import|list`: load the registry from CSV, TSV or XLSX; list registered or
unknown schools."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edugap.collector.commands.common import add_db_argument, db_url, open_store
from edugap.collector.export import match_places
from edugap.collector.model import School, StoreError
from edugap.collector.registry.schools import ParseResult, RegistryError, read
from edugap.collector.safetext import neutralise, printable, terminal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schools", help="import and list the school registry", description=__doc__
    )
    sub = parser.add_subparsers(dest="schools_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import",
        help="upsert schools from a CSV, TSV or XLSX file",
        description="Upsert schools from CSV (',' ';' or tab; UTF-8 with or without BOM, or "
        "UTF-16 with BOM, as Excel's 'CSV UTF-8' and 'Unicode Text' write them) or XLSX. "
        "Required columns: school_id, name, province, commune, level, lat, lon, students; "
        "optional: computers_required, contracted_mbps. Bad rows are reported with their line "
        "number and skipped; the exit code is 1 if any row failed, 2 if the file could not be "
        "read.",
    )
    imp.add_argument("file", type=Path, help="CSV, TSV or XLSX file")
    add_db_argument(imp)
    imp.add_argument("--dry-run", action="store_true", help="check the file, write nothing")
    imp.add_argument(
        "--allow-unknown-province",
        action="store_true",
        help="import a province that is not one of the 34 of 2025 as written (with a warning) "
        "instead of refusing its rows",
    )
    imp.set_defaults(func=import_command)

    ls = sub.add_parser("list", help="list registered schools, or unregistered reporters")
    add_db_argument(ls)
    ls.add_argument("--province", help="only this province (accents and case ignored)")
    ls.add_argument("--commune", help="only this commune (accents and case ignored)")
    ls.add_argument("--level", help="only this level")
    ls.add_argument(
        "--unregistered",
        action="store_true",
        help="list schools that send reports but are not in the registry",
    )
    ls.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ls.set_defaults(func=list_command)


def import_command(args: argparse.Namespace) -> int:
    try:
        result = read(
            args.file.read_bytes(),
            args.file.name,
            allow_unknown_province=args.allow_unknown_province,
        )
    except OSError as e:
        print(f"error: cannot read {terminal(args.file)}: {e.strerror or e}", file=sys.stderr)
        return 2
    except RegistryError as e:
        print(f"error: {terminal(args.file)}: {terminal(e)}", file=sys.stderr)
        return 2
    print(terminal(f"{args.file}: read as {result.found}"), file=sys.stderr)
    report(result, str(args.file), sys.stderr)
    written = 0
    if result.schools and not args.dry_run:
        try:
            store = open_store(db_url(args))
            try:
                written = store.upsert_schools(result.schools)
            finally:
                store.close()
        except StoreError as e:
            print(f"error: {terminal(e)}", file=sys.stderr)
            return 2
    verb = "checked" if args.dry_run else "imported"
    count = len(result.schools) if args.dry_run else written
    notes = f"; {len(result.notes)} notes" if result.notes else ""
    print(
        f"{verb} {count} schools; {len(result.errors)} rows failed; "
        f"{len(result.warnings)} warnings{notes}",
        file=sys.stderr,
    )
    return 1 if result.errors else 0


def report(result: ParseResult, source: str, out: TextIO) -> None:
    """Print every error and warning, one line each, naming the file and line."""
    for problem in result.errors:
        print(terminal(f"error: {source} {problem}"), file=out)
    for problem in result.warnings:
        print(terminal(f"warning: {source} {problem}"), file=out)
    for problem in result.notes:
        print(terminal(f"note: {source} {problem}"), file=out)


def select(
    schools: Sequence[School],
    province: str | None = None,
    commune: str | None = None,
    level: str | None = None,
) -> list[School]:
    """Schools matching every given filter, the same matching as the exports and the API."""
    return match_places(schools, province, commune, level)


COLUMNS = ("school_id", "name", "province", "commune", "level", "lat", "lon", "students")


def list_command(args: argparse.Namespace) -> int:
    try:
        store = open_store(db_url(args), create=False)
        try:
            if args.unregistered:
                registered = {s.school_id for s in store.schools()}
                last = store.last_report_per_school()
                ids = sorted(store.reporting_school_ids() - registered)
                rows: list[list[object]] = [
                    [i, last[i].isoformat() if i in last else ""] for i in ids
                ]
                header: Sequence[str] = ("school_id", "last_report")
            else:
                chosen = select(store.schools(), args.province, args.commune, args.level)
                rows = [[getattr(s, c) for c in COLUMNS] for s in chosen]
                header = COLUMNS
        finally:
            store.close()
    except StoreError as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    write_rows(header, rows, args.format, sys.stdout)
    return 0


def _csv_cell(value: object) -> object:
    return neutralise(printable(value)) if isinstance(value, str) else value


def write_rows(header: Sequence[str], rows: list[list[object]], fmt: str, out: TextIO) -> None:
    """Rows as JSON, CSV or a table; names and places come from the registry file, so every
    format escapes control characters and CSV also neutralises formulas."""
    if fmt == "json":
        text = json.dumps([dict(zip(header, r, strict=True)) for r in rows], ensure_ascii=False)
        out.write(printable(text, json=True) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_csv_cell(v) for v in r] for r in rows)
    else:
        cells = [[printable(str(v)) for v in r] for r in rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), file=out)
        for r in cells:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)
        print(f"({len(rows)} schools)", file=out)
