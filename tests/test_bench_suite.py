"""bench/run_all.py: runs every bench, survives a failing one, and assembles the page."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _run_all() -> ModuleType:
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))  # run_all imports the bench harness
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


GOOD = """
import sys
from pathlib import Path
quick = "--quick" in sys.argv
out = Path(__file__).parent / "results" / "good.md"
out.write_text("## Good bench\\n\\n- Ratio: **1.5x**; target within 3x: **met**.\\n"
               + ("- quick\\n" if quick else "- full\\n"))
"""
BAD = """
import sys
print("loading the data set")
raise SystemExit("cannot reach the database at 127.0.0.1:1")
"""


def _bench_dir(tmp_path: Path) -> Path:
    bench = tmp_path / "bench"
    (bench / "results").mkdir(parents=True)
    (bench / "good.py").write_text(GOOD)
    (bench / "bad.py").write_text(BAD)
    (bench / "_helpers.py").write_text("raise SystemExit('not a bench')\n")
    (bench / "run_all.py").write_text("raise SystemExit('must not run itself')\n")
    return bench


def test_failing_bench_is_recorded_and_the_others_still_run(tmp_path: Path) -> None:
    run_all = _run_all()
    bench = _bench_dir(tmp_path)
    paths = run_all.Paths(
        bench=bench, results=bench / "results", doc=tmp_path / "benchmarks.md", logs=tmp_path
    )
    assert run_all.main([], paths) == 0
    page = paths.doc.read_text()
    assert "## Machine" in page and "logical cores" in page and "Python" in page
    assert "| [good](#good-bench) | ok" in page
    assert "target within 3x: **met**" in page
    assert "- quick" in page  # ran with --quick by default
    assert "| [bad](#bad) | **failed**" in page
    assert "cannot reach the database at 127.0.0.1:1" in page
    assert "must not run itself" not in page and "not a bench" not in page


def test_full_flag_and_reassembly_without_running(tmp_path: Path) -> None:
    run_all = _run_all()
    bench = _bench_dir(tmp_path)
    paths = run_all.Paths(
        bench=bench, results=bench / "results", doc=tmp_path / "benchmarks.md", logs=tmp_path
    )
    assert run_all.main(["--full", "--only", "good"], paths) == 0
    assert "- full" in paths.doc.read_text()
    assert "| [bad](#bad) | not run, no result |" in paths.doc.read_text()

    (bench / "results" / "good.md").write_text("## Good bench\n\n- edited: **not met**\n")
    assert run_all.main(["--no-run"], paths) == 0
    page = paths.doc.read_text()
    assert "not run (recorded result) | edited: **not met** |" in page
    assert run_all.main(["--only", "nosuch"], paths) == 2


def test_verdicts_in_a_table_are_counted_not_quoted() -> None:
    run_all = _run_all()
    table = "| drain | 5 s | 1 s | **met** |\n| rss | 9 GB | 1 GB | **not met** |\n| x | **met** |"
    assert run_all.verdict(table) == "2 targets **met**, 1 **not met**"
    assert run_all.verdict("- Ratio 2x; target 3x: **met**.") == "Ratio 2x; target 3x: **met**."
    assert run_all.verdict("no verdict here") == "(no target verdict in the results file)"
