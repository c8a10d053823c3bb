"""A bench's command line, its bench/results/<name>.md and how it ends.

Every bench takes `--quick` (the size `make bench` runs) and `--out` (where to write instead of
bench/results/<name>.md), writes one Markdown section that starts with `## <title>`, names the
command that produced it and that the machine was shared, and marks each target **met** or
**not met**: bench/run_all.py builds docs/benchmarks.md's summary from those marks.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def arguments(
    name: str,
    doc: str | None,
    quick: str,
    add: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """The parser of bench/<name>.py: `--quick` (described by `quick`), `--out`, then `add`'s."""
    parser = argparse.ArgumentParser(
        prog=f"bench/{name}.py", description=(doc or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument(
        "--out", type=Path, default=RESULTS / f"{name}.md", help="the results file to write"
    )
    if add is not None:
        add(parser)
    return parser


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that produced a result, as a reader would type it (without --out)."""
    args = list(sys.argv[1:] if argv is None else argv)
    shown: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        if arg.startswith("--out="):
            continue
        shown.append(arg)
    return " ".join([".venv/bin/python", f"bench/{name}.py", *shown])


def write_result(text: str, out: Path) -> Path:
    """Write the results section (and print it); returns where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {out}", flush=True)
    return out


def verdict(ok: bool) -> str:
    """The mark run_all.py counts: **met** or **not met**."""
    return "**met**" if ok else "**not met**"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shared_note(load_before: float, load_after: float) -> str:
    """How loaded the shared machine was; every result says it."""
    return (
        f"1-minute load average {load_before:.1f} at the start and {load_after:.1f} at the end; "
        "the machine is shared with other work, so absolute figures vary with its load, "
        "ratios of sides run together much less"
    )


def main(run: Callable[[], int]) -> None:
    """Run a bench's main and exit with its status.

    SIGTERM (run_all's timeout, a Ctrl-C from a parent) becomes an exit, so `finally` blocks
    stop every child process; a real part that is missing ends the bench with its name.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        status = run()
    except pytest.skip.Exception as missing:  # tests.realparts.missing(): a part not installed
        raise SystemExit(str(missing)) from None
    sys.exit(status)
