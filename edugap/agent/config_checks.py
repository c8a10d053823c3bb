"""Rules of the agent config beyond single values: keys that must agree, variables that name
no key, and reading the file as Windows editors save it."""

from __future__ import annotations

import difflib
import re
import ssl
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edugap.protocol.redact import redact

if TYPE_CHECKING:
    from edugap.agent.config import AgentConfig, BrokerConfig

ENV_PREFIX = "EDUGAP_AGENT_"


def unknown_variables(env: Mapping[str, str], known: Collection[str]) -> list[str]:
    """EDUGAP_AGENT_* variables that name no key: an error, like an unknown key in the file."""
    problems = []
    for variable in sorted(v for v in env if v.upper().startswith(ENV_PREFIX)):
        if variable in known:
            continue
        close = difflib.get_close_matches(variable.upper(), sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (misspelt?)"
        problems.append(f"environment variable {variable} is not a known setting{hint}")
    return problems


def _username_check(config: AgentConfig) -> list[str]:
    """The shipped ACL lets user U publish only under edugap/v1/U/: a school id that is not
    the user name passes every other check and then loses every report at the broker."""
    broker = config.broker
    user = broker.settings().username
    if not broker.username_is_school_id or user is None or user == config.school.school_id:
        return []
    school = config.school.school_id
    said = f"'school.school_id' has value '{school}'" if school else "'school.school_id' is unset"
    return [
        f"config key 'broker.username' has value '{user}' but {said}: the broker's ACL lets "
        f"user {user} publish only under edugap/v1/{user}/, so every report would be refused. "
        "Make them equal (or set broker.username_is_school_id = false for a broker whose ACL "
        "differs)"
    ]


def _tls_check(broker: BrokerConfig) -> list[str]:
    """The TLS files load as the client will load them (a PEM that is not one, a key that does
    not fit the certificate)."""
    try:
        context = ssl.create_default_context(cafile=broker.ca_file)
        if broker.cert_file:
            context.load_cert_chain(broker.cert_file, broker.key_file)
    except (OSError, ssl.SSLError) as e:
        name = "ca_file" if broker.ca_file and not broker.cert_file else "cert_file"
        value = getattr(broker, name) or broker.ca_file
        return [f"config key 'broker.{name}' has value '{value}': cannot be used for TLS ({e})"]
    return []


def cross_checks(config: AgentConfig) -> list[str]:
    problems = _username_check(config)
    broker, bandwidth = config.broker, config.bandwidth
    if broker.ca_file or broker.cert_file:
        problems.extend(_tls_check(broker))
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(broker, k)]
    if tls_files and not broker.url.startswith("mqtts://"):
        problems.append(
            f"config key 'broker.{tls_files[0]}' is set but 'broker.url' has value "
            f"'{redact(broker.url)}': TLS files need an mqtts:// URL"
        )
    if broker.key_file and not broker.cert_file:
        problems.append("config key 'broker.key_file' is set without 'broker.cert_file'")
    if broker.reconnect_max_seconds < broker.reconnect_min_seconds:
        problems.append(
            f"config key 'broker.reconnect_max_seconds' has value "
            f"'{broker.reconnect_max_seconds}': must be >= broker.reconnect_min_seconds"
        )
    outbox = config.outbox
    if outbox.hold_retry_max_seconds < outbox.hold_retry_min_seconds:
        problems.append(
            f"config key 'outbox.hold_retry_max_seconds' has value "
            f"'{outbox.hold_retry_max_seconds:g}': must be >= outbox.hold_retry_min_seconds"
        )
    if bandwidth.role and bandwidth.backend == "selfhosted" and not bandwidth.server_url:
        problems.append(
            "config key 'bandwidth.server_url' is missing: the selfhosted backend needs the "
            "speed-test server's URL"
        )
    return problems


def read_text(path: Path) -> str:
    """A text file as Windows editors save it too: a UTF-8 byte-order mark (PowerShell 5.1's
    `Set-Content -Encoding UTF8`) is dropped, UTF-16 with its mark (`Out-File`) is decoded."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def toml_hint(text: str, error: tomllib.TOMLDecodeError) -> str:
    # tomllib names the place only in its message before Python 3.14: "(at line 3, column 9)"
    where = re.search(r"at line (\d+)", str(error))
    lines = text.splitlines()
    number = int(where.group(1)) if where else 0
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    if "\\" in line:
        return (
            ". A Windows path in double quotes needs each backslash doubled "
            '("C:\\\\ProgramData\\\\edugap\\\\ca.pem"), or single quotes '
            "('C:\\ProgramData\\edugap\\ca.pem')"
        )
    return ""
