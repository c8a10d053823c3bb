"""What every benchmark shares: processes, brokers, databases, the machine, runs and results.

A bench under bench/ says only what it measures and against which baseline; this package does
the rest, the same way for all of them:

- `procs`: child processes with their own log and process group, stopped newest first;
- `parts`: the real parts, as the tests start them: a private Mosquitto (plain, or running the
  shipped deploy/mosquitto config with TLS, per-school ACL and persistence) and a fresh
  PostgreSQL database;
- `pgserver`: a private PostgreSQL server (its own data directory and port, the machine's
  binaries) that a bench may restart or crash without disturbing anyone;
- `agents`: agent-like publishers, the agent's own Publisher and Drain over an in-memory
  outbox, one connection and one password per school, in processes of their own;
- `machine`: what the machine is and how loaded it was (it is shared: every result says so);
- `runs`: timing, side-by-side runs interleaved so that other load slows both alike, medians
  and percentiles;
- `results`: the command line every bench takes (`--quick`, `--out`) and the
  bench/results/<name>.md file that bench/run_all.py assembles into docs/benchmarks.md.

A bench imports it as `harness` (bench/ is the script's own directory); importing it puts the
repository root on sys.path, so the bench then imports `edugap` and `tests` as the test suite
does. The process, broker and database code is the tests' own (tests/realparts.py,
tests/shipped_broker.py, edugap.collector.demo.procs), not a copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from .machine import load_average, machine_line, machine_lines, versions  # noqa: E402
from .results import (  # noqa: E402
    RESULTS,
    arguments,
    command_line,
    main,
    shared_note,
    table,
    verdict,
    write_result,
)
from .runs import interleaved, median, percentile, rotated, timed  # noqa: E402

__all__ = [
    "RESULTS",
    "ROOT",
    "arguments",
    "command_line",
    "interleaved",
    "load_average",
    "machine_line",
    "machine_lines",
    "main",
    "median",
    "percentile",
    "rotated",
    "shared_note",
    "table",
    "timed",
    "verdict",
    "versions",
    "write_result",
]
