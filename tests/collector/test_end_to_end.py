"""End to end: `edugap serve` as a real process, a real Mosquitto, a real store (SQLite and
PostgreSQL), the registry imported with `edugap schools import`, reports published with the
protocol classes through a real paho client; /metrics and /api/v1/shortages must show the
figures worked out by hand below.

The registry and what the default policy must conclude (required = max(20, 0.05 x students);
median of the week's tests; good >= required, moderate >= 1 Mbps; usable computer: >= 4 GB RAM
minus 10 % slack, >= 2 cores; compliance: >= 80 % of the contract):

| school | students | required | tests      | median | class    | gap | computers (usable/required) | shortfalls |
| HN-A   | 1000     | 50       | 30, 45, 40 | 40     | moderate | 10  | 2/2                         | bandwidth, isp_contract (40 < 0.8 x 100), os_upgrade (one Windows 7) |
| HN-B   | 200      | 20       | 25, 35, 30 | 30     | good     | 0   | 1/3 (one has 2 GB RAM)       | computers |
| CB-C   | 100      | 20       | none       | -      | unknown  | 20 (unknown counts in full) | 0/5 (ceil(100/20)) | computers, not_monitored |
| ZZ-X   | (not in the registry)   | 5 | 5   | moderate | 15 (floor 20) | 0/- | bandwidth |
"""  # noqa: E501

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edugap.protocol.messages import (
    AnyReport,
    Bandwidth,
    CpuInfo,
    Disk,
    Inventory,
    NetInterface,
    OsInfo,
    new_report_id,
    utcnow,
)
from tests import realparts
from tests.collector.http_helpers import wait_ready
from tests.collector.mqtt_helpers import publish, publish_raw, publisher, wait_until

REGISTRY = """\
school_id,name,province,commune,level,lat,lon,students,computers_required,contracted_mbps
HN-A,Trường THPT Ba Đình,Thành phố Hà Nội,Phường Ba Đình,upper_secondary,21.034,105.814,1000,2,100
HN-B,Trường Tiểu học Hoàn Kiếm,Thành phố Hà Nội,Phường Hoàn Kiếm,primary,21.028,105.852,200,3,
CB-C,Trường Tiểu học Bảo Lâm,Cao Bằng,Xã Bảo Lâm,primary,22.86,105.49,100,,
"""
HANOI = "Thành phố Hà Nội"


def edugap(*args: str) -> list[str]:
    return [sys.executable, "-m", "edugap.collector.cli", *args]


def bandwidth(school: str, device: str, down: float, minutes_ago: int) -> Bandwidth:
    return Bandwidth(
        report_id=new_report_id(), school_id=school, device_id=device,
        measured_at=utcnow() - timedelta(minutes=minutes_ago), agent_version="e2e",
        download_mbps=down, upload_mbps=down / 4, latency_ms=20.0, bytes_used=10_000_000,
        backend="selfhosted", server="http://127.0.0.1/speedtest",
    )  # fmt: skip


def inventory(
    school: str, device: str, memory_mb: int, os_out_of_support: bool = False
) -> Inventory:
    return Inventory(
        report_id=new_report_id(), school_id=school, device_id=device,
        measured_at=utcnow() - timedelta(minutes=5), agent_version="e2e",
        os=OsInfo(name="Windows", version="7" if os_out_of_support else "11",
                  out_of_support=os_out_of_support),
        cpu=CpuInfo(model="Intel Core i3", cores=4, threads=8), memory_mb=memory_mb,
        disks=[Disk(mount="C:", total_gb=237.0, free_gb=80.0)],
        net=[NetInterface(name="Ethernet", kind="wired", speed_mbps=1000.0, up=True)],
        battery=None, boot_time=None, machine_kind="desktop",
    )  # fmt: skip


REPORTS: list[AnyReport] = [
    bandwidth("HN-A", "a1", 30.0, 300), bandwidth("HN-A", "a1", 45.0, 200),
    bandwidth("HN-A", "a2", 40.0, 100),
    inventory("HN-A", "a1", 8192), inventory("HN-A", "a2", 8192, os_out_of_support=True),
    bandwidth("HN-B", "b1", 25.0, 300), bandwidth("HN-B", "b1", 35.0, 200),
    bandwidth("HN-B", "b1", 30.0, 100),
    inventory("HN-B", "b1", 8192), inventory("HN-B", "b2", 2048),
    bandwidth("ZZ-X", "z1", 5.0, 60),
]  # fmt: skip


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def metric(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def collector(
    broker: realparts.Mosquitto, db_url: str, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`edugap serve` on a free port with the registry imported; yields (base URL, process)."""
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY, encoding="utf-8")
    imported = subprocess.run(edugap("schools", "import", str(registry), "--db", db_url),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    port = realparts.free_port()
    # metrics.school_detail: every per-school figure on /metrics, checked below
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDUGAP_SNAPSHOT_INTERVAL_SECONDS": "0.3",
           "EDUGAP_METRICS_SCHOOL_DETAIL": "true"}  # fmt: skip
    proc = subprocess.Popen(
        edugap("serve", "--broker", broker.url, "--db", db_url,
               "--listen", f"127.0.0.1:{port}", "--client-id", "e2e-collector"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reports_become_metrics_and_shortage_lists(
    collector: tuple[str, subprocess.Popen[str]], broker: realparts.Mosquitto
) -> None:
    base, proc = collector
    with publisher(broker.url) as client:
        publish(client, REPORTS)
        publish_raw(client, "edugap/v1/HN-A/a1/bandwidth", b"{not json")

    def caught_up() -> bool:
        found = samples(httpx.get(f"{base}/metrics").text)
        stored = metric(found, "edugap_collector_messages_total", result="stored")
        zz = metric(found, "edugap_school_download_mbps", school_id="ZZ-X", province="")
        a = metric(found, "edugap_school_download_mbps", school_id="HN-A", province=HANOI)
        b = metric(found, "edugap_school_computers_usable", school_id="HN-B", province=HANOI)
        return stored == len(REPORTS) and zz == 5.0 and a == 40.0 and b == 1.0

    wait_until(caught_up, timeout=60, what="the reports to reach the snapshot")
    body = httpx.get(f"{base}/metrics").content
    m = samples(body.decode())
    lint = subprocess.run([realparts.require_tool("promtool", "prometheus"), "check", "metrics"],
                          input=body, capture_output=True, timeout=60)  # fmt: skip
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint

    def school(name: str, school_id: str, province: str = HANOI, **labels: str) -> float | None:
        return metric(m, name, school_id=school_id, province=province, **labels)

    assert school("edugap_school_download_mbps", "HN-A") == 40.0
    assert school("edugap_school_download_mbps", "HN-B") == 30.0
    assert school("edugap_school_download_mbps", "CB-C", "Cao Bằng") is None
    assert school("edugap_school_required_mbps", "HN-A") == 50.0
    assert school("edugap_school_bandwidth_gap_mbps", "HN-A") == 10.0
    assert school("edugap_school_bandwidth_gap_mbps", "HN-B") == 0.0
    assert school("edugap_school_bandwidth_gap_mbps", "CB-C", "Cao Bằng") == 20.0
    assert school("edugap_school_connectivity", "HN-A", **{"class": "moderate"}) == 1
    assert school("edugap_school_connectivity", "HN-B", **{"class": "good"}) == 1
    assert school("edugap_school_connectivity", "CB-C", "Cao Bằng", **{"class": "unknown"}) == 1
    assert school("edugap_school_monitoring", "CB-C", "Cao Bằng", status="never") == 1
    assert school("edugap_school_computers_gap", "HN-B") == 2
    assert school("edugap_school_computers_gap", "CB-C", "Cao Bằng") == 5
    assert school("edugap_school_computers_os_out_of_support", "HN-A") == 1
    expected = {
        ("HN-A", HANOI): {"bandwidth", "isp_contract", "os_upgrade"},
        ("HN-B", HANOI): {"computers"},
        ("CB-C", "Cao Bằng"): {"not_monitored"},  # its 5 computers are only assumed missing
        ("ZZ-X", ""): {"bandwidth"},
    }
    for (school_id, province), kinds in expected.items():
        have = {
            k for k in ("bandwidth", "computers", "availability", "isp_contract", "os_upgrade",
                        "not_monitored")
            if school("edugap_school_shortfall", school_id, province, kind=k) == 1
        }  # fmt: skip
        assert have == kinds, school_id
    assert metric(m, "edugap_province_bandwidth_gap_mbps", province=HANOI) == 10.0
    assert metric(m, "edugap_province_computers_gap", province="Cao Bằng") == 5
    assert metric(m, "edugap_province_computers_gap_assumed", province="Cao Bằng") == 5
    assert metric(m, "edugap_province_computers_gap_measured", province="Cao Bằng") == 0
    assert metric(m, "edugap_province_bandwidth_gap_measured_mbps", province=HANOI) == 10.0
    assert metric(m, "edugap_province_schools", province=HANOI, connectivity="good") == 1
    assert metric(m, "edugap_collector_messages_total", result="rejected_bad_json") == 1
    assert metric(m, "edugap_collector_unregistered_schools") == 1
    # the buffered MQTT reader ran, and /metrics says so (a fallback to paho's would be "paho")
    paho = version("paho-mqtt")
    assert metric(m, "edugap_collector_ingest_reader_info", reader="fast", paho_version=paho) == 1
    info = [k for k in m if k[0] == "edugap_school_info" and ("school_id", "CB-C") in k[1]]
    assert dict(info[0][1])["commune"] == "Xã Bảo Lâm"

    shard = samples(httpx.get(f"{base}/metrics", params={"province": "Cao Bằng"}).text)
    assert {dict(k[1]).get("province") for k in shard} == {"Cao Bằng"}

    response = httpx.get(f"{base}/api/v1/shortages", params={"format": "csv", "kind": "any"})
    assert response.status_code == 200
    rows = {r["school_id"]: r for r in csv.DictReader(io.StringIO(response.text.lstrip("\ufeff")))}
    assert set(rows) == {"HN-A", "HN-B", "CB-C", "ZZ-X"}
    assert float(rows["HN-A"]["bandwidth_gap_mbps"]) == 10.0
    assert float(rows["CB-C"]["bandwidth_gap_mbps"]) == 20.0
    assert int(rows["HN-B"]["computers_gap"]) == 2
    assert int(rows["CB-C"]["computers_gap"]) == 5
    only_cb = httpx.get(f"{base}/api/v1/shortages",
                        params={"format": "csv", "province": "cao bang"}).text  # fmt: skip
    assert [r["school_id"] for r in csv.DictReader(io.StringIO(only_cb.lstrip("\ufeff")))] == [
        "CB-C"
    ]

    rejects = httpx.get(f"{base}/api/v1/rejects").json()["rejects"]
    assert [r["reason"] for r in rejects] == ["bad_json"]

    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log
    for line in ("connected to mqtt://", "listening on http://127.0.0.1:", "snapshot of 4 schools",
                 "collector stopped"):  # fmt: skip
        assert line in log, log
    assert "fast MQTT reader" not in log, log


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("listen", ["'http.listen'", "'everywhere'"]),
        ("ca_file", ["'broker.url'", "garbage.pem"]),
        ("policy", ["'policy.file'", "policy.toml"]),
        ("db", ["'db.url'", "postgresql://nobody@127.0.0.1:1/edugap"]),
        ("port in use", ["'http.listen'", "cannot listen"]),
    ],
)
def test_bad_setting_stops_serve_at_start(tmp_path: Path, case: str, named: list[str]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    policy = tmp_path / "policy.toml"
    policy.write_text("[required]\nmin_mbps = -5\n")
    db = str(tmp_path / "x.db")
    args = {
        "listen": ["--listen", "everywhere", "--db", db],
        "ca_file": ["--broker", "mqtts://127.0.0.1:1", "--ca-file", str(garbage), "--db", db],
        "policy": ["--policy", str(policy), "--db", db],
        "db": ["--db", "postgresql://nobody@127.0.0.1:1/edugap"],
    }.get(case, [])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        if case == "port in use":
            args = ["--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--db", db]
        elif case != "listen":
            args = ["--listen", "127.0.0.1:0", *args]
        result = subprocess.run(edugap("serve", *args), capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    for text in named:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
