"""`edugap serve`: run the collector (ingest, snapshots, metrics, API, coverage page)."""

from __future__ import annotations

import argparse
import sys

from edugap.collector.config import SETTINGS, ConfigError, load_config, remember_secrets
from edugap.collector.safetext import terminal

_METAVARS = {
    "--broker": "URL",
    "--db": "URL",
    "--listen": "HOST:PORT",
    "--policy": "FILE",
    "--group": "NAME",
    "--client-id": "ID",
    "--name": "NAME",
    "--api-token": "TOKEN",
    "--metrics-token": "TOKEN",
    "--snapshot-interval": "SECONDS",
    "--retention-days": "DAYS",
    "--ca-file": "FILE",
    "--cert-file": "FILE",
    "--key-file": "FILE",
    "--outlines": "FILE",
}


def _default(value: object) -> str:
    return "" if value is None else f" (default: {value})"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the collector: MQTT ingest, metrics, API, coverage page",
        description="Run the collector. Settings come from defaults, then --config FILE (TOML), "
        "then EDUGAP_<SECTION>_<KEY> environment variables, then these options; "
        "see docs/configuration.md. Bad settings stop it at start (exit 2).",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    for setting in SETTINGS:
        if setting.cli is None:
            continue
        # every option defaults to None: "not given", so the environment and file still apply
        parser.add_argument(
            setting.cli,
            dest=setting.dest,
            metavar=_METAVARS.get(setting.cli, "VALUE"),
            default=None,
            help=f"{setting.help}{_default(setting.default)} [{setting.name}, ${setting.env}]",
        )
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Load the settings, start every part, serve until SIGTERM/SIGINT."""
    # imported here so `edugap --help` stays fast and works without uvicorn installed
    from edugap.collector.app import CollectorApp, StartupError

    try:
        config = load_config(args.config, cli=vars(args))
    except ConfigError as e:
        print(f"edugap serve: {terminal(e)}", file=sys.stderr)
        return 2
    remember_secrets(config)
    app = CollectorApp(config)
    try:
        app.start()
    except StartupError as e:
        app.stop()
        print(f"edugap serve: {terminal(e)}", file=sys.stderr)
        return 2
    return app.serve()
