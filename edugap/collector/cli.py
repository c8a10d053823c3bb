"""The `edugap` command: one sub-command module each under collector/commands/, registered here."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from edugap.collector import __version__
from edugap.collector.safetext import SafeFormatter

# name -> module under edugap.collector.commands; each module has `register(subparsers)` which adds
# its parser and sets `func=handler(args) -> int` as the default.
COMMANDS: dict[str, str] = {
    "serve": "edugap.collector.commands.serve",
    "schools": "edugap.collector.commands.schools",
    "policy": "edugap.collector.commands.policy",
    "export": "edugap.collector.commands.export",
    "rejects": "edugap.collector.commands.rejects",
    "collectors": "edugap.collector.commands.collectors",
    "simulate": "edugap.collector.commands.simulate",
    "demo": "edugap.collector.commands.demo",
    "map": "edugap.collector.commands.map",
    "dashboards": "edugap.collector.commands.dashboards",
}


# import name -> distribution of each dependency of the `collector` extra (pyproject.toml)
COLLECTOR_DEPENDENCIES: dict[str, str] = {
    "prometheus_client": "prometheus-client",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "psycopg": "psycopg",
    "xlsxwriter": "xlsxwriter",
    "vietnam_provinces": "vietnam-provinces",
}
NOT_INSTALLED = (
    "edugap: the collector is not installed in this Python environment (missing: {missing}).\n"
    "This looks like an agent-only install: the school agent's command is `edugap-agent`.\n"
    "To run the collector here, install it with:  pip install 'edugap[collector]'"
)


def missing_dependencies() -> list[str]:
    """Distributions of the `collector` extra that cannot be imported here."""
    return [
        dist
        for module, dist in COLLECTOR_DEPENDENCIES.items()
        if importlib.util.find_spec(module) is None
    ]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command that can be imported."""
    parser = argparse.ArgumentParser(
        prog="edugap",
        description="edugap collector: ingest school agents' reports over MQTT, compute "
        "shortfalls against the policy, serve Prometheus metrics, a coverage page and "
        "shortage lists.",
        epilog="Installed with the `collector` extra: pip install 'edugap[collector]'. "
        "School computers need only the agent (`edugap-agent`).",
    )
    parser.add_argument("--version", action="version", version=f"edugap {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `edugap`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # every log line passes the same filter as command output: passwords hidden, controls escaped
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level), handlers=[handler])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    missing = missing_dependencies()
    if missing:
        print(NOT_INSTALLED.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
