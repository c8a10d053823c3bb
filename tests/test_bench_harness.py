"""bench/harness: the in-memory outbox the agent-like publishers drain, and result plumbing."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from harness.agents import MemoryOutbox, device_of  # noqa: E402
from harness.results import command_line, verdict  # noqa: E402
from harness.runs import interleaved, percentile, rotated  # noqa: E402


def test_memory_outbox_gives_the_drain_what_the_agent_outbox_would() -> None:
    box = MemoryOutbox()
    seqs = [box.add(f"id-{i}", "edugap/v1/S/d/heartbeat", b"{}") for i in range(10)]
    assert seqs == list(range(1, 11))
    assert [r.seq for r in box.pending(0, 3)] == [1, 2, 3]
    assert [r.seq for r in box.pending(3, 3)] == [4, 5, 6]  # after the drain's cursor
    # acknowledged out of order: what is left still comes oldest first, nothing twice
    assert box.ack([2, 5, 5, 99]) == 2
    assert [r.seq for r in box.pending(0, 20)] == [1, 3, 4, 6, 7, 8, 9, 10]
    assert box.ack([1, 3, 4]) == 3
    assert [r.seq for r in box.pending(0, 2)] == [6, 7]
    assert box.depth() == 5 and box.max_depth == 10
    assert box.pending(10, 5) == []


def test_each_school_has_a_device_of_its_own() -> None:
    # the agent's client id comes from its device: one shared id would kick connections off
    assert device_of("SOAK-0001") != device_of("SOAK-0002")


def test_result_plumbing() -> None:
    assert command_line("soak", ["--quick", "--out", "/tmp/x.md", "--rate", "5"]) == (
        ".venv/bin/python bench/soak.py --quick --rate 5"
    )
    assert verdict(True) == "**met**" and verdict(False) == "**not met**"
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2)
    assert calls == ["a", "b", "a", "b"] and len(times["b"].wall) == 2
