"""`edugap-agent`: run the agent service, or look at what it would report and how it is doing."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edugap.agent import __version__, state
from edugap.agent.config import AgentConfig, ConfigError, config_path, load
from edugap.agent.speedtest_cmd import cmd_speedtest, speedtest_advice
from edugap.protocol import messages as protocol

log = logging.getLogger("agent")

EXIT_CONFIG = 2
ONCE_PROBES = ("inventory", "heartbeat", "bandwidth")
ONCE_DEFAULT = ("inventory", "heartbeat")
# `availability` is what the probe is called; its report is the heartbeat
PROBE_ALIASES = {"availability": "heartbeat"}

# What each command does: the main --help lists them, each command's --help starts with its own.
COMMANDS = {
    "run": "the service: inventory, heartbeats and speed tests on schedule, delivered through "
    "an on-disk outbox that survives broker outages and restarts",
    "once": "take the inventory and a heartbeat now and print the reports as JSON; sends "
    'nothing, needs no config file (the school is then shown as "unenrolled"); the speed test '
    "(tens of MB) only with --probe bandwidth; exits 1 when a probe failed",
    "speedtest": "run one speed test now with a progress display and a summary; sends nothing",
    "status": "outbox depth, dropped reports, last successful publish, broker reachable",
    "check-config": "validate the config file and environment; non-zero exit on any bad key",
    "enrol": "write this computer's config from the school id, broker URL, password (from a "
    "file, the environment or a prompt, never the command line) and CA; the installers call it",
}


def _description() -> str:
    listing = "\n".join(
        textwrap.fill(text, 92, initial_indent=f"  {name:<14}", subsequent_indent=" " * 16)
        for name, text in COMMANDS.items()
    )
    return (
        "The edugap school agent measures this computer and the school's Internet link and\n"
        "reports over MQTT to the edugap collector.\n\ncommands:\n"
        + listing
        + "\n\nThe config file is TOML (see docs/agent.md); every key can be overridden by an"
        "\nenvironment variable EDUGAP_AGENT_<SECTION>_<KEY>, e.g."
        " EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES=5.\n"
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: $EDUGAP_AGENT_CONFIG, else /etc/edugap/agent.toml on "
        "Linux, %%ProgramData%%\\edugap\\agent.toml on Windows)",
    )
    parser = argparse.ArgumentParser(
        prog="edugap-agent",
        description=_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edugap-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "run",
        parents=[common],
        description=COMMANDS["run"],
        help="run the agent service (until stopped)",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "once",
        parents=[common],
        description=COMMANDS["once"],
        help="measure now and print the reports as JSON; send nothing",
    )
    p.add_argument(
        "--probe",
        choices=(*ONCE_PROBES, *PROBE_ALIASES),
        help="only this measurement (default: inventory and heartbeat; bandwidth runs a full "
        "speed test only when named here)",
    )
    p.set_defaults(func=cmd_once)
    p = sub.add_parser(
        "speedtest",
        parents=[common],
        description=COMMANDS["speedtest"],
        help="one speed test now, with progress",
    )
    p.add_argument("--backend", choices=("selfhosted", "speedtest.net"), help="override backend")
    p.add_argument("--server-url", help="override bandwidth.server_url")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=cmd_speedtest)
    p = sub.add_parser(
        "status",
        parents=[common],
        description=COMMANDS["status"],
        help="outbox, dropped reports, last publish, broker reachable",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="broker check timeout (s)")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "check-config",
        parents=[common],
        description=COMMANDS["check-config"],
        help="validate the configuration",
    )
    p.set_defaults(func=cmd_check_config)
    from edugap.agent.enrol import add_arguments, cmd_enrol

    p = sub.add_parser(
        "enrol", parents=[common], description=COMMANDS["enrol"], help="write the config"
    )
    add_arguments(p)
    p.set_defaults(func=cmd_enrol)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


def _load(args: argparse.Namespace) -> AgentConfig | None:
    path, named = config_path(args.config)
    try:
        return load(path, required=named)
    except ConfigError as e:
        for problem in e.problems:
            print(f"edugap-agent: {problem}", file=sys.stderr)
        return None


def _logging(config: AgentConfig) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_file:
        # a Windows scheduled task has no console: the file is where its story is told
        from logging.handlers import RotatingFileHandler

        try:
            Path(config.log_file).parent.mkdir(parents=True, exist_ok=True)
            handlers.append(RotatingFileHandler(config.log_file, maxBytes=1_000_000, backupCount=3))
        except OSError as e:
            print(f"edugap-agent: cannot log to {config.log_file}: {e}", file=sys.stderr)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )


# --- run -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    _logging(config)
    from edugap.agent.service import Service

    try:
        service = Service(config)
    except (OSError, sqlite3.Error) as e:
        log.error("cannot use state directory %s: %s", config.state_dir, e)
        return 1

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()


# --- once ----------------------------------------------------------------------------------


def _identity(config: AgentConfig) -> Any:
    from edugap.agent.service import identity_for

    device = state.read_device_id(Path(config.state_dir)) or state.NOT_INSTALLED
    return identity_for(config, device)


def _outbox_counts(config: AgentConfig) -> tuple[int, int]:
    """(depth, dropped_pending) of the service's outbox, read-only; zeros when there is none."""
    from edugap.agent.outbox import FILE_NAME, read_stats

    try:
        stats = read_stats(Path(config.state_dir) / FILE_NAME)
    except (OSError, sqlite3.Error):
        return 0, 0
    return stats.depth, stats.dropped_pending


def cmd_once(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    _logging(config)
    identity = _identity(config)
    # a speed test moves tens of MB of the school's data: only when asked for by name
    wanted = [PROBE_ALIASES.get(args.probe, args.probe)] if args.probe else list(ONCE_DEFAULT)
    reports: list[protocol.Report] = []
    failed = False
    for name in wanted:
        try:
            report = _once_probe(name, config, identity)
        except Exception as e:
            log.error("%s probe failed: %s", name, e)
            failed = True
            continue
        reports.append(report)
        if isinstance(report, protocol.Bandwidth) and report.error:
            log.error("bandwidth probe failed: %s", speedtest_advice(report.error))
            failed = True
    json.dump([protocol.to_builtins(r) for r in reports], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if failed else 0


def _once_probe(name: str, config: AgentConfig, identity: Any) -> protocol.Report:
    if name == "inventory":
        from edugap.agent.probes import InventoryProbe

        report: protocol.Report = InventoryProbe().collect(identity)
        return report
    if name == "bandwidth":
        from edugap.agent.service import bandwidth_probe

        return bandwidth_probe(config).collect(identity)
    from edugap.agent.probes import AvailabilityProbe, TrafficProbe

    availability = AvailabilityProbe(
        list(config.availability_targets), timeout_s=config.availability.timeout_seconds
    )
    traffic = TrafficProbe()
    traffic.rates()
    availability.check()
    summary = availability.summary()
    link = traffic.rates()
    depth, dropped = _outbox_counts(config)
    return summary.heartbeat(
        identity,
        measured_at=protocol.utcnow(),
        queue_depth=depth,
        dropped_reports=dropped,
        link=link,
    )


# --- status --------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    from edugap.agent.status import report

    return report(config, args.timeout)


# --- check-config --------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    path, named = config_path(args.config)
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    if not named and not path.exists():
        print(f"note: no config file at {path}; using defaults and the environment")
    print(f"config OK: {config.source}")
    print(
        f"  school {config.school_id}{'' if config.enrolled else ' (not enrolled)'}, "
        f"broker {config.broker.settings().url} (MQTT {config.broker.mqtt_version})"
    )
    s = config.schedule
    print(
        f"  inventory every {s.inventory_hours:g} h, heartbeat every {s.heartbeat_minutes:g} "
        f"min, availability every {s.availability_minutes:g} min"
    )
    source = "" if config.availability.targets else " (the broker's)"
    print(f"  availability targets {', '.join(config.availability_targets)}{source}")
    if config.bandwidth.role:
        hours = "-".join(t.strftime("%H:%M") for t in s.school_hours)
        print(
            f"  {s.speedtests_per_day} speed test(s) a day ({config.bandwidth.backend}) "
            f"{hours} {','.join(s.school_days)} {s.timezone}, budget "
            f"{config.bandwidth.daily_budget_mb:g} MB"
        )
    else:
        print("  bandwidth role off: no speed tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
