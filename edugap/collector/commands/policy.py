"""`edugap policy show`: print the shortfall policy in force, with where each value comes from."""

from __future__ import annotations

import argparse
import os
import sys

from edugap.collector.policy.rules import LoadedPolicy, PolicyError, load, to_toml

POLICY_ENV = "EDUGAP_POLICY_FILE"  # the same variable `edugap serve` reads for [policy] file


def add_policy_argument(parser: argparse.ArgumentParser) -> None:
    """--policy FILE, defaulting to $EDUGAP_POLICY_FILE, else the documented defaults."""
    parser.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help=f"policy TOML overriding the defaults (default: ${POLICY_ENV}, else the defaults)",
    )


def load_from_args(args: argparse.Namespace) -> LoadedPolicy:
    """The policy named by --policy or the environment; raises PolicyError."""
    path = args.policy or os.environ.get(POLICY_ENV) or None
    return load(path)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="show the shortfall policy", description=__doc__)
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    show = sub.add_parser(
        "show",
        help="print the policy in force as TOML, each value with its source",
        description="Print the policy in force as TOML. Each value is preceded by a comment "
        "saying whether it is a default (and the default's source) or comes from your file. "
        "An unknown key or a bad value is an error naming the key and the value (exit 2).",
    )
    add_policy_argument(show)
    show.set_defaults(func=show_command)


def show_command(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(to_toml(loaded))
    return 0
