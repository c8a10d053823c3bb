"""`edugap-agent speedtest`: one speed test now, with progress, and failures school IT can act
on ("no Internet or DNS: try --backend selfhosted ..."), never a traceback."""

from __future__ import annotations

import argparse
import json
import sys

from edugap.protocol import messages as protocol
from edugap.protocol.redact import redact


def cmd_speedtest(args: argparse.Namespace) -> int:
    from edugap.agent.cli import EXIT_CONFIG, _identity, _load, _logging

    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    _logging(config)
    backend = args.backend or config.bandwidth.backend
    url = args.server_url or config.bandwidth.server_url
    problem = _speedtest_arguments(backend, args.server_url, url)
    if problem:
        print(f"edugap-agent: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    from edugap.agent.service import bandwidth_probe

    try:
        probe = bandwidth_probe(config, backend, url)
    except ValueError as e:
        print(f"edugap-agent: {e}", file=sys.stderr)
        return EXIT_CONFIG
    limit = config.bandwidth.timeout_seconds
    print(
        f"speed test: {backend} {redact(url or '')} (at most {limit:g} s)",
        file=sys.stderr,
    )
    if backend == "selfhosted":
        print(
            f"  {probe.streams.streams} streams each way, {probe.phase_seconds:g} s each way "
            "(speedtest-cli's fixed files if the endpoint has no timed streams)",
            file=sys.stderr,
        )
    interactive = sys.stderr.isatty()

    rates: dict[str, float] = {}

    def progress(stage: str, fraction: float) -> None:
        if stage == "done":
            return  # said below, once the outcome is known
        line = f"  {stage:<9} {fraction * 100:5.1f}%"
        if stage in rates:
            line += f"  {rates[stage]:8.1f} Mbps"
        if interactive:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif fraction in (0.0, 1.0):
            print(line, file=sys.stderr)

    report = probe.collect(_identity(config), progress=progress, rate=rates.__setitem__)
    outcome = "  failed" if report.error else "  done      100.0%"
    print(f"\r{outcome:<36}" if interactive else outcome, file=sys.stderr)

    def mbps(value: float | None) -> str:
        return f"{value:.1f} Mbps" if value is not None else "-"

    print(f"download:  {mbps(report.download_mbps)}")
    print(f"upload:    {mbps(report.upload_mbps)}")
    latency = f"{report.latency_ms:.1f} ms" if report.latency_ms is not None else "-"
    print(f"latency:   {latency}")
    print(f"data used: {report.bytes_used / 1e6:.1f} MB ({report.bytes_used} bytes on the link)")
    print(f"server:    {report.server}")
    if report.note:
        print(f"note:      {report.note}")
    if report.error:
        print(f"error:     {speedtest_advice(report.error)}")
    if args.json:
        print(json.dumps(protocol.to_builtins(report), indent=2))
    return 1 if report.error else 0


def _speedtest_arguments(backend: str, given: str | None, url: str | None) -> str | None:
    """What is wrong with the speed-test arguments, in a sentence; None when nothing is."""
    if given is not None:
        from edugap.agent.config_values import http_url

        try:
            http_url(given)
        except ValueError:
            return (
                f"--server-url has value {given!r}: must be an http:// or https:// URL, e.g. "
                "https://edugap.example/speedtest/"
            )
    if backend == "selfhosted" and not url:
        return "the selfhosted backend needs --server-url or bandwidth.server_url"
    return None


#: (words in a failed test's error, what school IT can do about it)
_ADVICE = (
    (("name resolution", "name or service not known", "nodename nor servname", "getaddrinfo"),
     "no Internet or DNS: this computer cannot look up the speed-test servers. Check its link "
     "and DNS, or test against the school's collector: --backend selfhosted --server-url "
     "https://<collector>/speedtest/"),
    (("configretrievalerror", "serversretrievalerror", "set-up failed"),
     "speedtest.net could not be reached (no Internet, a proxy or a firewall): try "
     "--backend selfhosted --server-url https://<collector>/speedtest/"),
    (("connection refused",),
     "the speed-test server refused the connection: check --server-url (bandwidth.server_url) "
     "and that the collector serves /speedtest/"),
    (("429", "too many"),
     "the speed-test server limits tests from this address: try again in a few minutes"),
    (("exceeded its", "timed out"),
     "the test ran out of time (bandwidth.timeout_seconds): the link is very slow or dropping"),
    (("certificate verify failed",),
     "the speed-test server's certificate did not verify: check the URL's host name, or the "
     "computer's clock and CA store"),
)  # fmt: skip


def speedtest_advice(error: str) -> str:
    """A failed speed test's error, with what to do about it when the cause is recognised."""
    lowered = error.lower()
    for words, advice in _ADVICE:
        if any(w in lowered for w in words):
            return f"{advice} ({error})"
    return error
