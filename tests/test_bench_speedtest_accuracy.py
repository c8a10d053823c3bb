"""bench/speedtest_accuracy.py's own logic: conditions, the agent's output, the goal per row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import speedtest_accuracy as bench  # noqa: E402


def test_conditions_parse_and_name_themselves() -> None:
    assert bench.Condition.parse("100/40") == bench.Condition(100, 100, 40)
    assert bench.Condition.parse("20:5/40").key == "20:5/40"
    lossy = bench.Condition.parse("20/40/0.5%")
    assert (lossy.loss_pct, lossy.key) == (0.5, "20/40/0.5")
    assert len(bench.FULL) == 22 and len(set(bench.FULL)) == 22
    assert [bench.Condition.parse(c).key for c in bench.FULL] == list(bench.FULL)
    with pytest.raises(ValueError, match="DOWN"):
        bench.Condition.parse("fast")


TEXT = """download:  45.3 Mbps
upload:    33.0 Mbps
latency:   41.1 ms
data used: 64.0 MB
server:    http://10.211.77.1:8080/speedtest/
"""


def test_the_agent_output_is_read_as_json_or_as_text() -> None:
    report = {"download_mbps": 45.29, "upload_mbps": 32.97, "latency_ms": 41.1,
              "bytes_used": 63977338, "error": None, "nested": {"a": [1]}}  # fmt: skip
    assert bench.parse_agent(TEXT + json.dumps(report, indent=2)) == report
    assert bench.parse_agent(json.dumps(report)) == report
    assert bench.parse_agent(TEXT) == {
        "download_mbps": 45.3, "upload_mbps": 33.0, "latency_ms": 41.1, "bytes_used": 64_000_000
    }  # fmt: skip
    failed = bench.parse_agent("download:  -\nupload:    -\nerror:     timed out\n")
    assert failed == {"error": "timed out"}


def result(condition: str, down: float, up: float, used: int, carried: int) -> bench.Result:
    run = bench.Run(iperf_down=100, iperf_up=100, down=down, up=up, latency_ms=41,
                    bytes_used=used, link_bytes=carried)  # fmt: skip
    return bench.Result(condition, 40.5, [run])


def test_the_goal_is_5_percent_near_10_percent_far_and_bytes_within_2() -> None:
    assert bench.Row.of(result("100/40", 96, 95.5, 99, 100)).met()
    assert not bench.Row.of(result("100/40", 94, 99, 99, 100)).met()  # 6 % low
    assert bench.Row.of(result("200/80", 91, 92, 99, 100)).met()  # far: 10 %
    assert not bench.Row.of(result("100/40", 99, 99, 97, 100)).met()  # bytes 3 % under
    table, met = bench.render_table([result("200/80", 91, 92, 99, 100),
                                     result("2/0", 99, 99, 99, 100)])  # fmt: skip
    assert met and table.index("2 Mbit/s") < table.index("200 Mbit/s")  # in rate order
