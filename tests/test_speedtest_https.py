"""The speed test over HTTPS: the timed streams' TLS connections, certificate checks included."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edugap.agent.probes import BandwidthProbe, Identity
from edugap.agent.probes.streams import StreamPlan
from edugap.collector.serving.speedtest import TokenBucket, serve_in_thread, speedtest_app
from tests import realparts

ME = Identity(school_id="79-001", device_id="dev-1", agent_version="0.1.0")
STREAMS = StreamPlan(seconds=1.5, streams=2)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 made by the real openssl tool."""
    openssl = realparts.require_tool("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_endpoint_trusted_by_the_system_store(
    certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the agent trusts the OS/OpenSSL store
    app = speedtest_app(download_pacer=TokenBucket(100), upload_pacer=TokenBucket(100))
    with serve_in_thread(app, ssl_certfile=cert, ssl_keyfile=key) as url:
        assert url.startswith("https://")
        report = BandwidthProbe(backend="selfhosted", server_url=url, streams=STREAMS).collect(ME)
    assert report.error is None, report.error
    assert report.download_mbps and report.upload_mbps and report.latency_ms is not None
    assert (app.downloads, app.uploads) == (2, 2)
    # the payload, with TLS records and TCP/IP headers on top
    server_bytes = app.bytes_served + app.bytes_received
    assert server_bytes < report.bytes_used <= 1.10 * server_bytes


def test_untrusted_certificate_fails_the_test(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    app = speedtest_app()
    with serve_in_thread(app, ssl_certfile=cert, ssl_keyfile=key) as url:
        report = BandwidthProbe(backend="selfhosted", server_url=url, streams=STREAMS).collect(ME)
    assert report.error is not None and "CERTIFICATE_VERIFY_FAILED" in report.error
    assert report.download_mbps is None and app.bytes_served == 0
