"""schemathesis against the OpenAPI document a real `edugap serve` serves, with and without
tokens: every response's status, content type and body match the document, bad parameter
values are refused, good ones accepted, and with tokens a request without one is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edugap.collector.model import School
from edugap.collector.store import open_store
from tests import realparts
from tests.collector import reports
from tests.collector.http_helpers import wait_ready

pytestmark = pytest.mark.integration

API_TOKEN, METRICS_TOKEN = "api-token-for-schemathesis", "metrics-token-for-schemathesis"
HN, CB = "Thành phố Hà Nội", "Cao Bằng"


def _fill(db: str) -> None:
    """Schools with each kind of evidence, a province of the list with nothing short (Cao
    Bằng's one good school), and a reporter that is not registered."""
    now = datetime.now(UTC)
    store = open_store(db)
    try:
        store.upsert_schools([
            School("HN-1", "Trường Tiểu học Ba Đình", HN, "Phường Ba Đình", "primary", 21.03,
                   105.81, 900, 30, 50.0),
            School("HN-2", "Trường chưa báo cáo", HN, "Phường Ngọc Hà", "primary", 21.04,
                   105.82, 300),
            School("CB-1", "Trường Bảo Lâm", CB, "Xã Bảo Lâm", "primary", 22.8, 105.5, 100, 0),
        ])  # fmt: skip
        batch = [
            reports.bandwidth("HN-1", "d1", now - timedelta(hours=2), 7.5),
            reports.inventory("HN-1", "d1", now - timedelta(hours=1)),
            reports.heartbeat("HN-1", "d1", now - timedelta(hours=1), checks=60, ok=55),
            reports.bandwidth("CB-1", "d1", now - timedelta(hours=3), 80.0),
            reports.inventory("CB-1", "d1", now - timedelta(hours=3)),
            reports.bandwidth("STRANGER", "d1", now - timedelta(hours=1), 3.0),
        ]
        store.save_batch([reports.received(r) for r in batch])
    finally:
        store.close()


Serve = Callable[[bool], str]


@pytest.fixture
def serve(broker: realparts.Mosquitto, tmp_path: Path) -> Iterator[Serve]:
    """A function that starts `edugap serve` on a filled store, with or without tokens, and
    returns its base URL."""
    procs: list[subprocess.Popen[str]] = []
    db = str(tmp_path / "edugap.db")
    _fill(db)

    def start(tokens: bool) -> str:
        port = realparts.free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDUGAP_SNAPSHOT_INTERVAL_SECONDS": "5"}
        if tokens:
            env |= {"EDUGAP_HTTP_API_TOKEN": API_TOKEN, "EDUGAP_HTTP_METRICS_TOKEN": METRICS_TOKEN}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edugap.collector.cli", "serve", "--broker", broker.url,
             "--db", db, "--listen", f"127.0.0.1:{port}",
             "--client-id", f"schemathesis-{len(procs)}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        return base

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _schemathesis(base: str, tmp_path: Path, config: str = "") -> subprocess.CompletedProcess[str]:
    tool = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if tool is None:
        realparts.missing("schemathesis", "install the dev extra: pip install -e '.[dev]'")
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(config, encoding="utf-8")
    return subprocess.run(
        [tool, "--config-file", str(settings), "run", f"{base}/openapi.json",
         "--max-examples", "25", "--seed", "11", "--workers", "1", "--no-color",
         "--generation-database", "none", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip


def test_schemathesis_finds_nothing_on_the_open_api(serve: Serve, tmp_path: Path) -> None:
    base = serve(False)
    doc = httpx.get(f"{base}/openapi.json", timeout=10).json()
    assert "securitySchemes" not in doc["components"]  # open, and the document says so
    done = _schemathesis(base, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failures" not in done.stdout


def test_schemathesis_finds_nothing_with_tokens(serve: Serve, tmp_path: Path) -> None:
    base = serve(True)
    doc = httpx.get(f"{base}/openapi.json", timeout=10).json()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "metrics_bearer"}
    assert doc["paths"]["/api/v1/schools"]["get"]["security"] == [{"bearer": []}]
    config = (
        f'[auth.openapi.bearer]\nbearer = "{API_TOKEN}"\n'
        f'[auth.openapi.metrics_bearer]\nbearer = "{METRICS_TOKEN}"\n'
    )
    done = _schemathesis(base, tmp_path, config)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failures" not in done.stdout
    # a request without the token is refused (schemathesis checks it too: ignored_auth)
    assert httpx.get(f"{base}/api/v1/schools", timeout=10).status_code == 401
