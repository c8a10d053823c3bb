"""Run every benchmark under bench/ and assemble docs/benchmarks.md from bench/results/*.md.

Each bench/<name>.py runs its measured thing and its baseline side by side and writes
bench/results/<name>.md. This runs them one after another (with `--quick` unless `--full`),
keeps going when one fails (recording the failure and its error), then rewrites
docs/benchmarks.md: the machine, how to run, a table of every bench's verdict, and each
results section.

    .venv/bin/python bench/run_all.py              # every bench, --quick (make bench)
    .venv/bin/python bench/run_all.py --full       # full sizes (takes much longer)
    .venv/bin/python bench/run_all.py --only scale --only export
    .venv/bin/python bench/run_all.py --no-run     # only reassemble docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.machine import machine_lines

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
# full output of each bench, outside the repository
LOGS = Path(tempfile.gettempdir()) / "edugap-bench"
QUICK_TIMEOUT = 20 * 60.0
FULL_TIMEOUT = 90 * 60.0


@dataclass(frozen=True)
class Paths:
    """Where benches, their results, their logs and the assembled page live."""

    bench: Path = BENCH
    results: Path = RESULTS
    doc: Path = DOC
    logs: Path = LOGS


@dataclass
class Outcome:
    """How one bench run went."""

    name: str
    ok: bool
    seconds: float
    error: str = ""


def discover(bench_dir: Path = BENCH) -> list[str]:
    """Names of the bench scripts: bench/*.py except this one and private helpers (the
    shared harness is a package, bench/harness/, so it is not one of them)."""
    return sorted(
        p.stem for p in bench_dir.glob("*.py") if p.stem != "run_all" and not p.stem.startswith("_")
    )


def run_one(name: str, full: bool, paths: Paths, python: str = sys.executable) -> Outcome:
    """Run bench/<name>.py; a non-zero exit, a crash or a timeout is a failed outcome."""
    argv = [python, str(paths.bench / f"{name}.py")] + ([] if full else ["--quick"])
    log = paths.logs / f"{name}.log"
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"run_all: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    try:
        with log.open("w", encoding="utf-8") as out:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=FULL_TIMEOUT if full else QUICK_TIMEOUT,
                check=False,
            )
    except subprocess.TimeoutExpired as e:
        return Outcome(name, False, time.monotonic() - started, f"timed out after {e.timeout:g}s")
    except OSError as e:
        return Outcome(name, False, time.monotonic() - started, f"could not start: {e}")
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        last = tail[-1] if tail else "no output"
        # first line: the exit code and the last thing the bench said (usually the exception)
        return Outcome(name, False, seconds, f"exit {done.returncode}: {last}\n" + "\n".join(tail))
    return Outcome(name, True, seconds)


def verdict(text: str) -> str:
    """What a results section says about its targets, short enough for one table cell.

    One verdict sentence is quoted; verdicts inside a table are counted ("3 met, 1 not met").
    """
    lines = [line.strip() for line in text.splitlines() if _VERDICT.search(line)]
    if not lines:
        return "(no target verdict in the results file)"
    if len(lines) == 1 and not lines[0].startswith("|"):
        return re.sub(r"^[-*]\s*", "", lines[0]).replace("|", "/")
    met = sum(len(re.findall(r"\*\*met\*\*", line, re.I)) for line in lines)
    not_met = sum(len(re.findall(r"\*\*not met\*\*", line, re.I)) for line in lines)
    return f"{met} targets **met**, {not_met} **not met**"


_VERDICT = re.compile(r"\*\*(not met|met)\*\*", re.I)


def title(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith("## "):
            return line[3:].strip()
    return name


def assemble(
    names: list[str], outcomes: dict[str, Outcome], full: bool | None, results: Path = RESULTS
) -> str:
    """docs/benchmarks.md: header, summary table, then every results section."""
    how = (
        "`make bench` (every bench with `--quick`), or `.venv/bin/python bench/run_all.py "
        "--full` for the full sizes; one bench: `.venv/bin/python bench/<name>.py [--quick]`."
    )
    if full is None:
        ran = "This file was reassembled from the recorded results (`run_all.py --no-run`)."
    else:
        ran = f"Last run: `.venv/bin/python bench/run_all.py{' --full' if full else ''}`."
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/run_all.py` from `bench/results/*.md`; do not edit by hand.",
        "Every benchmark runs the measured thing and a baseline side by side, several runs each,",
        "and reports medians, the ratio and its target. Each section names its exact command.",
        "",
        "## Machine",
        "",
        *machine_lines(),
        "",
        f"How to run: {how} {ran}",
        "",
        "## Summary",
        "",
        "| bench | this run | verdict |",
        "| --- | --- | --- |",
    ]
    sections: list[str] = []
    for name in names:
        path = results / f"{name}.md"
        text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
        outcome = outcomes.get(name)
        if outcome is None:
            status = "not run (recorded result)" if text else "not run, no result"
        elif outcome.ok:
            status = f"ok ({outcome.seconds:.0f} s)"
        else:
            status = f"**failed** ({outcome.seconds:.0f} s)"
        shown = verdict(text) if text else "-"
        parts.append(f"| [{name}](#{_anchor(title(text, name))}) | {status} | {shown} |")
        section = text or f"## {name}\n\nNo results recorded."
        if outcome is not None and not outcome.ok:
            note = (
                f"\n\n**This bench failed in the last run** ({outcome.error.splitlines()[0]}). "
                + ("The figures above are from an earlier run." if text else "")
                + f"\n\n```\n{outcome.error}\n```"
            )
            section += note
        sections.append(section)
    return "\n".join(parts) + "\n\n" + "\n\n".join(sections) + "\n"


def _anchor(heading: str) -> str:
    """GitHub-style anchor of a heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip()
    return re.sub(r" ", "-", slug)


def main(argv: list[str] | None = None, paths: Paths | None = None) -> int:
    """Run the benches, then write docs/benchmarks.md; 0 even when a bench failed."""
    paths = paths or Paths()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full sizes instead of --quick")
    parser.add_argument("--only", action="append", default=[], help="run only this bench")
    parser.add_argument("--skip", action="append", default=[], help="do not run this bench")
    parser.add_argument("--no-run", action="store_true", help="only reassemble the docs")
    args = parser.parse_args(argv)
    names = discover(paths.bench)
    unknown = [n for n in [*args.only, *args.skip] if n not in names]
    if unknown:
        print(f"run_all: no bench named {', '.join(unknown)} (have: {', '.join(names)})")
        return 2
    outcomes: dict[str, Outcome] = {}
    if not args.no_run:
        for name in names:
            if (args.only and name not in args.only) or name in args.skip:
                continue
            outcome = run_one(name, args.full, paths)
            outcomes[name] = outcome
            state = "ok" if outcome.ok else f"FAILED: {outcome.error.splitlines()[0]}"
            state += f", log {paths.logs / (name + '.log')}"
            print(f"run_all: {name}: {state} ({outcome.seconds:.0f} s)", file=sys.stderr)
    paths.doc.parent.mkdir(parents=True, exist_ok=True)
    page = assemble(names, outcomes, None if args.no_run else args.full, paths.results)
    paths.doc.write_text(page, "utf-8")
    failed = [o.name for o in outcomes.values() if not o.ok]
    print(f"run_all: wrote {paths.doc}; failed: {', '.join(failed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
