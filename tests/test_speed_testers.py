"""The speed-tester designation end to end: real agents tell the collector (through their
inventory) whether they were designated to run the school's speed tests, and `edugap serve`
tells a school with live agents but no designated tester apart from one whose tests fail, in
the API, the shortage export and the per-province gauge on /metrics (no per-school series).

| school | agents                          | speed tests in 7 days | speedtest state |
| HN-A   | one, not designated             | none                  | no_tester       |
| HN-B   | one, designated (`role = true`) | none, then one failed | waiting, then failing |
| CB-C   | none                            | none                  | no_agents       |
"""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import timedelta
from typing import Any

import httpx

from edugap.protocol.messages import Bandwidth, new_report_id, utcnow
from tests.agent.agentproc import run_agent, wait_for
from tests.collector.mqtt_helpers import publish, publisher
from tests.collector.test_end_to_end import HANOI, collector, metric, samples

__all__ = ["collector", "run_agent"]  # fixtures used below


def school(base: str, school_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{base}/api/v1/schools/{school_id}").json()
    return found


def test_no_designated_tester_is_told_apart_from_failing_tests(
    collector: tuple[str, subprocess.Popen[str]], run_agent: Any, broker: Any
) -> None:
    base, _ = collector
    run_agent("a", school={"school_id": "HN-A"})  # the default: not a speed tester
    # designated, but no test planned today: the collector sees the designation only
    run_agent("b", school={"school_id": "HN-B"},
                  bandwidth={"role": True, "backend": "selfhosted",
                             "server_url": "http://127.0.0.1:9/speedtest/"},
                  schedule={"speedtests_per_day": 0})  # fmt: skip

    def state(school_id: str) -> str | None:
        response = httpx.get(f"{base}/api/v1/schools/{school_id}")
        return response.json().get("speedtest") if response.status_code == 200 else None

    wait_for(lambda: state("HN-A") == "no_tester" and state("HN-B") == "waiting", timeout=60,
             what="both agents' inventories in the snapshot")  # fmt: skip
    assert school(base, "HN-A")["speed_testers"] == 0
    assert school(base, "HN-B")["speed_testers"] == 1
    assert school(base, "CB-C")["speedtest"] == "no_agents"

    # the designated computer's test fails (as its agent reports a failed test)
    failed = Bandwidth(
        report_id=new_report_id(), school_id="HN-B", device_id="b-device",
        measured_at=utcnow() - timedelta(minutes=1), agent_version="test",
        backend="selfhosted", server="http://127.0.0.1:9/speedtest/",
        error="download failed: Connection refused",
    )  # fmt: skip
    with publisher(broker.url) as client:
        publish(client, [failed])
    wait_for(lambda: state("HN-B") == "failing", timeout=60, what="the failed test counted")
    assert school(base, "HN-B")["tests_failed_7d"] == 1
    assert school(base, "HN-A")["speedtest"] == "no_tester"  # still nobody designated there

    # per province on /metrics: where nobody was designated, where tests fail
    m = samples(httpx.get(f"{base}/metrics", params={"province": HANOI}).text)
    gauge = "edugap_province_speedtest_schools"
    assert metric(m, gauge, province=HANOI, state="no_tester") == 1
    assert metric(m, gauge, province=HANOI, state="failing") == 1
    assert metric(m, gauge, province=HANOI, state="measured") == 0
    assert metric(m, gauge, province="Cao Bằng", state="no_agents") is None  # another shard
    per_school = {k[0] for k in m if any(label == "school_id" for label, _ in k[1])}
    assert not {name for name in per_school if "tester" in name or "speedtest" in name}

    # the shortage export's speed-test columns
    csv_text = httpx.get(f"{base}/api/v1/shortages", params={"format": "csv", "kind": "any"}).text
    rows = list(csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff"))))
    assert list(rows[0])[-3:] == ["speedtest", "speed_testers", "tests_failed_7d"]
    states = {r["school_id"]: r["speedtest"] for r in rows}
    assert states == {"HN-A": "no_tester", "HN-B": "failing", "CB-C": "no_agents"}
