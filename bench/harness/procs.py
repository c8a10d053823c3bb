"""Child processes of a bench: each with its log file and its own process group.

The `Child` of `edugap demo` is used as it is (edugap.collector.demo.procs): start with a log,
stop with a signal, kill the whole group if it does not stop in time. `started()` stops every
child a bench started, newest first, however the bench ends (harness.main turns SIGTERM into
an exit, so that includes run_all's timeout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from edugap.collector.demo.procs import (
    Child,
    agent_argv,
    edugap_argv,
    free_port,
    port_open,
    run_once,
    wait_until,
)
from tests.realparts import end_process, wait_port

ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "Child",
    "agent_argv",
    "edugap_argv",
    "end_process",
    "env_for_child",
    "free_port",
    "port_open",
    "python_child",
    "run_once",
    "started",
    "wait_port",
    "wait_until",
]


@contextmanager
def started() -> Iterator[list[Child]]:
    """A list for the children a bench starts; all stopped, newest first, on the way out."""
    children: list[Child] = []
    try:
        yield children
    finally:
        for child in reversed(children):
            child.stop()


def env_for_child(**extra: str) -> dict[str, str]:
    """The environment for edugap child processes: the repository on PYTHONPATH, no
    EDUGAP_AGENT_* / EDUGAP_* settings leaking in from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDUGAP_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def python_child(
    name: str, code: str, args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Child:
    """A Child running `python -c code args...` with this interpreter (not yet started)."""
    return Child(name, [sys.executable, "-c", code, *args], log, env=env or env_for_child())
