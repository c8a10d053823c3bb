"""Timing: single runs, side-by-side runs interleaved, medians, percentiles, ratios."""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], object], runs: int, *, collect: bool = False) -> list[float]:
    """Wall seconds of `runs` calls of fn (`collect`: a garbage collection before each)."""
    times = []
    for _ in range(runs):
        if collect:
            gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


@dataclass
class Times:
    """Seconds of each run of one side: wall clock, this process's CPU, its children's CPU."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    children_cpu: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleaved(sides: Mapping[str, Callable[[], object]], runs: int) -> dict[str, Times]:
    """Run every side once per round, `runs` rounds, so that a change in the machine's load
    (it is shared) slows every side alike."""
    times = {name: Times() for name in sides}
    for _ in range(runs):
        for name in sides:
            wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
            sides[name]()
            times[name].wall.append(time.perf_counter() - wall)
            times[name].cpu.append(time.process_time() - cpu)
            times[name].children_cpu.append(_children_cpu() - children)
    return times


def rotated(items: Sequence[T], run: int) -> list[T]:
    """items starting at position `run` (mod len): side by side in a different order every
    run, so that a change in the machine's load does not favour one side."""
    shift = run % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def wait(condition: Callable[[], object], timeout: float, what: str, every: float = 0.005) -> None:
    """Poll `condition` every `every` seconds until true; SystemExit naming `what` after
    `timeout`. Polled often: a bench that times up to this moment must not add a poll's
    interval to its figure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
