"""`edugap-agent enrol`: write this computer's config from one enrolment input.

The input is the school id, the broker URL, the password and the broker's CA; the user name
defaults to the school id (the shipped ACL's convention) and whether this computer runs the
school's speed tests is said once, here. The password never travels on the command line (it
would show in `ps` and the shell history): it is read from a file (`-` is standard input),
from EDUGAP_AGENT_BROKER_PASSWORD, or asked for. Both installers call this, so the config is
written, checked and protected in one place; a config that would not load is never written.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edugap.agent.config import ConfigError, load

PASSWORD_ENV = "EDUGAP_AGENT_BROKER_PASSWORD"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--school-id", required=True, metavar="ID", help="the school's code")
    p.add_argument("--broker", required=True, metavar="URL", help="mqtts://host:port")
    p.add_argument("--username", metavar="USER", help="MQTT user name (default: the school id)")
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"read the MQTT password from FILE ('-': standard input); default: ${PASSWORD_ENV}, "
        "else asked for",
    )
    p.add_argument("--ca-file", metavar="FILE", help="the CA that signed the broker's certificate")
    p.add_argument(
        "--speed-tester",
        action="store_true",
        help="this computer runs the school's speed tests (one per school; default: not)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="state directory (default: the platform's)")
    p.add_argument("--log-file", metavar="FILE", help="also log to FILE (Windows: no console)")
    p.add_argument("--force", action="store_true", help="replace an existing config")


class EnrolError(ValueError):
    """Something in the enrolment input that school IT must fix; the message says what."""


def read_password(source: str | None, env: dict[str, str] | os._Environ[str]) -> str:
    """The password from a file, standard input, the environment or a prompt."""
    if source == "-":
        password = sys.stdin.readline()
    elif source:
        try:
            password = Path(source).read_text(encoding="utf-8-sig").splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError) as e:
            raise EnrolError(
                f"--password-file {source}: cannot read a password from it ({e})"
            ) from None
    elif env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = getpass.getpass("MQTT password for this school: ")
    else:
        raise EnrolError(
            f"no password: give --password-file FILE (or '-' for standard input), set "
            f"{PASSWORD_ENV}, or run in a terminal to be asked"
        )
    password = password.strip("\r\n")
    if not password:
        raise EnrolError("the password is empty")
    return password


def _toml(value: str) -> str:
    """A TOML literal string when it can be one (Windows paths stay readable), else basic."""
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(args: argparse.Namespace, password: str, ca_file: str | None) -> str:
    """The config file's text."""
    lines = [
        "# edugap agent config, written by `edugap-agent enrol`. Every key is explained in the",
        "# example config (edugap-agent.example.toml) and in docs/agent.md.",
    ]
    if args.state_dir:
        lines.append(f"state_dir = {_toml(args.state_dir)}")
    if args.log_file:
        lines.append(f"log_file = {_toml(args.log_file)}")
    lines += ["", "[school]", f"school_id = {_toml(args.school_id)}", "", "[broker]"]
    lines.append(f"url = {_toml(args.broker)}")
    lines.append(f"username = {_toml(args.username or args.school_id)}")
    lines.append(f"password = {_toml(password)}")
    if ca_file:
        lines.append(f"ca_file = {_toml(ca_file)}")
    role = "true" if args.speed_tester else "false"
    lines += ["", "[bandwidth]", "# whether this computer runs the school's speed tests"]
    lines.append(f"role = {role}")
    return "\n".join(lines) + "\n"


def enrol(args: argparse.Namespace, env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """Write the config (and the CA beside it); returns its path. Raises EnrolError."""
    config = Path(args.config)
    if config.exists() and not args.force:
        raise EnrolError(f"{config} exists: pass --force to replace it (its password too)")
    password = read_password(args.password_file, env)
    config.parent.mkdir(parents=True, exist_ok=True)
    ca_file = None
    if args.ca_file:
        source = Path(args.ca_file)
        if not source.is_file():
            raise EnrolError(f"--ca-file {source}: no such file")
        target = config.parent / "ca.pem"
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        ca_file = str(target)
    text = render(args, password, ca_file)
    fd, name = tempfile.mkstemp(prefix=".agent-", suffix=".toml", dir=config.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(temp, 0o640)  # the password: root and the service's group only (Linux)
        # the environment would not be there when the service runs: check the file alone
        load(temp, env={k: v for k, v in env.items() if not k.startswith("EDUGAP_AGENT_")})
        os.replace(temp, config)
    except ConfigError as e:
        temp.unlink(missing_ok=True)
        raise EnrolError("\n".join(e.problems).replace(str(temp), str(config))) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return config


def cmd_enrol(args: argparse.Namespace) -> int:
    from edugap.agent.cli import EXIT_CONFIG
    from edugap.agent.config import config_path

    if not args.config:
        args.config = str(config_path(None)[0])
    try:
        path = enrol(args)
    except EnrolError as e:
        for line in str(e).splitlines():
            print(f"edugap-agent: {line}", file=sys.stderr)
        return EXIT_CONFIG
    tester = "runs" if args.speed_tester else "does not run"
    print(f"enrolled: school {args.school_id}, config {path}; this computer {tester} speed tests")
    return 0
