"""`edugap serve` says why it cannot reach the broker: in its log (once per change of cause,
not every retry) and in /readyz, against the shipped Mosquitto config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.agentproc import wait_for
from tests.realparts import CountingProxy
from tests.restart_parts import CollectorProcess
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker


def readyz(collector: CollectorProcess) -> Any:
    try:
        return httpx.get(f"http://127.0.0.1:{collector.port}/readyz", timeout=5)
    except httpx.TransportError:
        return None


def pointed_at(collector: CollectorProcess, url: str) -> None:
    """Rewrite the collector's broker URL (the rest of its config stays)."""
    text = collector.config.read_text()
    start = text.index('url = "mqtt://')
    end = text.index("\n", start)
    collector.config.write_text(text[:start] + f'url = "{url}"' + text[end:])


@pytest.mark.parametrize("fault", ["wrong password", "broker stopped"])
def test_the_collector_names_why_it_cannot_reach_the_broker(
    deploy_broker: ShippedBroker, tmp_path: Path, fault: str
) -> None:
    collector = CollectorProcess(tmp_path / "collector", deploy_broker, str(tmp_path / "e.db"))
    password = deploy_broker.users[COLLECTOR_USER]
    if fault == "wrong password":
        password, expected = "wrong", f"refused user '{COLLECTOR_USER}' as not authorised"
    else:
        deploy_broker.stop()
        expected = f"connection refused by 127.0.0.1:{deploy_broker.plain_port}"
    # the tries are counted through a proxy; a stopped broker must refuse the collector itself
    proxy = CountingProxy(deploy_broker.plain_port)
    port = proxy.port if fault == "wrong password" else deploy_broker.plain_port
    pointed_at(collector, f"mqtt://{COLLECTOR_USER}:{password}@127.0.0.1:{port}")
    collector.start(wait_ready=False)
    try:
        if fault == "wrong password":
            wait_for(lambda: proxy.connections >= 3, timeout=30, what="several attempts")
        answer = wait_for(lambda: readyz(collector), timeout=30, what="/readyz answering")
        assert answer.status_code == 503
        body = answer.json()
        assert body["checks"]["ingest"] is False
        assert expected in body["why"]["ingest"], body
        log = collector.log_text()
        assert log.count(expected) == 1, log  # once, though it was tried again and again
        if fault == "broker stopped":
            deploy_broker.start()
            wait_for(collector.ready, timeout=60, what="ready once the broker is back")
            assert "answers again" in collector.log_text()
            assert "why" not in readyz(collector).json()
    finally:
        collector.stop()
        proxy.close()


def test_a_plain_url_against_the_tls_listener_says_use_mqtts(
    deploy_broker: ShippedBroker, tmp_path: Path
) -> None:
    collector = CollectorProcess(tmp_path / "collector", deploy_broker, str(tmp_path / "e.db"))
    password = deploy_broker.users[COLLECTOR_USER]
    pointed_at(collector, f"mqtt://{COLLECTOR_USER}:{password}@127.0.0.1:{deploy_broker.tls_port}")
    collector.start(wait_ready=False)
    try:
        answer = wait_for(
            lambda: (r := readyz(collector)) is not None and "why" in r.json() and r,
            timeout=30,
            what="/readyz with a cause",
        )
        assert "closed the connection before answering" in answer.json()["why"]["ingest"]
        assert "mqtts://" in answer.json()["why"]["ingest"]
    finally:
        collector.stop()

