"""`edugap map`: the coverage map as an image (SVG, PNG or PDF) for reports and slides."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from edugap.collector.commands.common import add_db_argument, db_url, open_store
from edugap.collector.commands.policy import add_policy_argument, load_from_args
from edugap.collector.export import KIND_ANY, ExportError, Filters, filter_schools
from edugap.collector.export.mapimage import (
    FORMATS,
    MapImageError,
    MapSpec,
    render_svg,
    write_image,
)
from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    SHORTFALL_KINDS,
    StoreError,
)
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import PolicyError
from edugap.collector.registry.outlines import OutlineError, load_outlines
from edugap.collector.registry.places import default_places
from edugap.collector.safetext import terminal
from edugap.protocol.messages import utcnow

FILTERS = ("province", "commune", "level", "connectivity", "monitoring", "kind")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "map",
        help="draw the coverage map as an image (SVG, PNG, PDF)",
        description="Evaluate the policy over the store now and draw the filtered schools on "
        "the country's outline, coloured by connectivity class, with a legend (counts and "
        "shares per class), title and date: for reports and slides. The format follows the "
        "-o file's extension.",
    )
    parser.add_argument("--province", help="only this province (accents and case ignored)")
    parser.add_argument("--commune", help="only this commune (accents and case ignored)")
    parser.add_argument("--level", help="only this school level")
    parser.add_argument("--connectivity", choices=CONNECTIVITY_CLASSES, help="only this class")
    parser.add_argument("--monitoring", choices=MONITORING_STATES, help="only this status")
    parser.add_argument("--kind", choices=[*SHORTFALL_KINDS, KIND_ANY],
                        help="only schools with this shortfall ('any': at least one)")  # fmt: skip
    parser.add_argument(
        "--outlines",
        metavar="FILE",
        default=None,
        help="GeoJSON of province or commune outlines, as http.outlines "
        "(default: $EDUGAP_HTTP_OUTLINES, else the country outline only)",
    )
    parser.add_argument("--lang", choices=("vi", "en"), default="vi",
                        help="language of the title and legend (default: vi)")  # fmt: skip
    parser.add_argument("--title", help="title instead of the default one")
    add_db_argument(parser)
    add_policy_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help=f"image file: {', '.join('.' + f for f in FORMATS)}")  # fmt: skip
    parser.set_defaults(func=map_command)


def _place(args: argparse.Namespace) -> str:
    """The official name of the chosen province, as the title and the zoom need it."""
    if not args.province:
        return ""
    found = default_places().province(args.province)
    return found.name if found is not None else str(args.province)


def map_command(args: argparse.Namespace) -> int:
    path = Path(args.output)
    if path.suffix.lstrip(".").lower() not in FORMATS:
        print(f"error: {terminal(path.name)}: the file name must end in "
              f".{', .'.join(FORMATS)}", file=sys.stderr)  # fmt: skip
        return 2
    try:
        policy = load_from_args(args).policy
        outlines = load_outlines(args.outlines or os.environ.get("EDUGAP_HTTP_OUTLINES") or None)
        store = open_store(db_url(args), create=False)
        try:
            snapshot = evaluate(store, policy, utcnow())
        finally:
            store.close()
        schools = filter_schools(snapshot, Filters(**{f: getattr(args, f) for f in FILTERS}))
    except (PolicyError, OutlineError, StoreError, ExportError) as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    notes = " · ".join(f"{f}={getattr(args, f)}" for f in FILTERS[1:] if getattr(args, f))
    spec = MapSpec(_place(args), snapshot.generated_at.astimezone(policy.zone), args.lang,
                   args.title, notes)  # fmt: skip
    svg = render_svg(schools, spec, outlines.country, outlines.areas)
    try:
        fmt = write_image(svg, path)
    except MapImageError as e:
        print(f"error: {terminal(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {terminal(args.output)}: {e.strerror or e}", file=sys.stderr)
        return 2
    counts = Counter(s.connectivity for s in schools)
    shown = ", ".join(f"{c} {counts.get(c, 0)}" for c in CONNECTIVITY_CLASSES)
    print(f"wrote the map of {len(schools)} schools ({shown}) as {fmt} to {args.output}",
          file=sys.stderr)  # fmt: skip
    if outlines.country is None:
        print("warning: no country outline installed (make install builds it)", file=sys.stderr)
    return 0
