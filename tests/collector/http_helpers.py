"""Helpers for tests of `edugap serve` over HTTP: waiting for it, and sockets the server closes."""

from __future__ import annotations

import socket
import subprocess

import httpx

from tests.collector.mqtt_helpers import wait_until


def wait_ready(base: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait until `edugap serve` at `base` answers /readyz with 200; fail if it exits."""

    def ready() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=timeout, what="edugap serve to be ready")


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True), or the socket's timeout (False)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True
