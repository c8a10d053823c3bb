"""Real Prometheus for tests: a collector serving a snapshot, the deploy config pointed at it,
a Prometheus process with the deploy rules, and PromQL queries against it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from edugap.collector.model import IngestStats, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.speedtest import serve_in_thread
from tests import realparts

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"


def collector_url(store: Store, snap: Any, metrics_token: str | None = None) -> Any:
    holder = SnapshotHolder()
    holder.publish(snap, 0.5)
    stats = IngestStats()
    stats.count("stored", 42)
    stats.count("rejected_bad_json", 3)
    stats.reader, stats.paho_version = "fast", "2.2.0"
    deps = HttpDeps(holder, Exposition(holder, stats), store, lambda: {"all": True},
                    metrics_token=metrics_token)  # fmt: skip
    return serve_in_thread(build_app(deps))


def with_token(config: str, token_file: Path) -> str:
    """The config with its commented `authorization` blocks switched on, reading token_file."""
    config = re.sub(r"^(\s*)# (authorization:).*$", r"\1\2", config, flags=re.M)
    config = re.sub(r"^(\s*)#( +type: Bearer).*$", r"\1 \2", config, flags=re.M)
    return re.sub(r"^(\s*)#( +credentials_file:) \S+$", rf"\1 \2 {token_file}", config, flags=re.M)


def prometheus_config(template: str, host_port: str, token_file: Path) -> str:
    """The deploy config pointed at the test collector, scraping every second, with the token."""
    config = with_token(template.replace("collector:8080", host_port), token_file)
    config = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", config)
    config = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", config)
    config = re.sub(r"evaluation_interval: \S+", "evaluation_interval: 1s", config)
    return re.sub(r"refresh_interval: \S+", "refresh_interval: 1s", config)


def query(base: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


@contextmanager
def prometheus(workdir: Path, config: str) -> Iterator[str]:
    """A real Prometheus with the deploy rules and `config`; yields its base URL."""
    exe = realparts.require_tool("prometheus", "prometheus")
    (workdir / "rules").mkdir(parents=True)
    (workdir / "rules" / "edugap-rules.yml").write_text(
        (DEPLOY / "rules" / "edugap-rules.yml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (workdir / "prometheus.yml").write_text(config, encoding="utf-8")
    port = realparts.free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "log").open("wb"),
    )  # fmt: skip
    try:
        realparts.wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        realparts.end_process(proc, timeout=30)
