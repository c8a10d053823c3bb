"""Agent configuration: one TOML file, every key overridable by an environment variable.

The rule for environment variables: `EDUGAP_AGENT_<SECTION>_<KEY>` in upper case, for example
`EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES=5`; top-level keys drop the section
(`EDUGAP_AGENT_STATE_DIR`). Lists are comma-separated in the environment.

Every key is a dataclass field below, with its parser and its documentation in the field's
metadata, so the documentation test can check that docs/agent.md names each one.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import Any

from edugap.agent.config_checks import (
    ENV_PREFIX,
    cross_checks,
    read_text,
    toml_hint,
    unknown_variables,
)
from edugap.agent.config_values import (
    DAYS,
    backend,
    boolean,
    broker_url,
    days,
    http_url,
    load_zone,
    log_level,
    mqtt_version,
    non_negative,
    non_negative_int,
    optional_file,
    optional_path,
    optional_text,
    path,
    phase_seconds,
    positive,
    positive_int,
    school_id,
    stream_count,
    targets,
    time_range,
    zone,
)
from edugap.protocol.mqtt import BrokerSettings, parse_broker_url
from edugap.protocol.redact import redact

__all__ = ["DAYS", "AgentConfig", "ConfigError", "all_keys", "load", "load_zone", "parse"]

CONFIG_ENV = "EDUGAP_AGENT_CONFIG"
UNENROLLED = "unenrolled"


def _program_data() -> Path:
    return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "edugap"


def default_config_path() -> Path:
    """Where the config file lives unless --config or EDUGAP_AGENT_CONFIG says otherwise."""
    if sys.platform == "win32":
        return _program_data() / "agent.toml"
    return Path("/etc/edugap/agent.toml")


def default_state_dir() -> str:
    if sys.platform == "win32":
        return str(_program_data() / "state")
    return "/var/lib/edugap-agent"


class ConfigError(ValueError):
    """One or more bad config values; each line names the key and the value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def key(default: Any, parse: Callable[[object], Any], doc: str) -> Any:
    """A config field: its default, the parser that validates it, and one line for the docs."""
    return field(default=default, metadata={"parse": parse, "doc": doc})


# --- the sections --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchoolConfig:
    school_id: str | None = key(None, school_id, "The school's code; absent = unenrolled.")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    url: str = key("mqtt://127.0.0.1:1883", broker_url, "mqtt://host:port or mqtts://host:port.")
    username: str | None = key(None, optional_text, "MQTT user name (per school).")
    password: str | None = key(None, optional_text, "MQTT password.")
    ca_file: str | None = key(None, optional_file, "CA certificate file for mqtts://.")
    cert_file: str | None = key(None, optional_file, "Client certificate file (mutual TLS).")
    key_file: str | None = key(None, optional_file, "Client private key file (mutual TLS).")
    mqtt_version: int = key(5, mqtt_version, "5, or 3 for MQTT 3.1.1; 5 falls back to 3.")
    username_is_school_id: bool = key(
        True, boolean, "The user name must be the school id (the shipped ACL); false: no check."
    )
    keepalive: int = key(60, positive_int, "Seconds between MQTT keep-alive pings.")
    reconnect_min_seconds: int = key(1, positive_int, "First reconnect delay (then doubles).")
    reconnect_max_seconds: int = key(120, positive_int, "Longest reconnect delay.")

    def settings(self) -> BrokerSettings:
        """The broker settings the MQTT client factory takes (config keys win over the URL;
        the user name defaults to the school id, see `parse`)."""
        settings = parse_broker_url(self.url)
        return replace(
            settings,
            username=self.username or settings.username,
            password=self.password or settings.password,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            mqtt_version=self.mqtt_version,
            keepalive=self.keepalive,
        )


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    inventory_hours: float = key(6.0, positive, "Hours between inventory reports.")
    heartbeat_minutes: float = key(5.0, positive, "Minutes between heartbeats.")
    availability_minutes: float = key(1.0, positive, "Minutes between availability checks.")
    speedtests_per_day: int = key(4, non_negative_int, "Speed tests per school day.")
    school_hours: tuple[time, time] = key(
        (time(7), time(17)), time_range, "Local hours when speed tests may run."
    )
    school_days: tuple[str, ...] = key(DAYS[:6], days, "Days when speed tests may run.")
    timezone: str = key("Asia/Ho_Chi_Minh", zone, "The school's time zone.")
    max_start_delay_seconds: float = key(
        300.0, non_negative, "No speed test sooner than a random delay up to this after start."
    )


@dataclass(frozen=True, slots=True)
class BandwidthConfig:
    # off unless designated: a lab of 30 computers testing 4 times a day each moved ~12 GB
    role: bool = key(False, boolean, "Whether this computer runs the school's speed tests.")
    backend: str = key("speedtest.net", backend, "selfhosted or speedtest.net.")
    server_url: str | None = key(None, http_url, "Self-hosted speed-test server URL.")
    daily_budget_mb: float = key(1000.0, positive, "Most speed-test traffic per day, in MB.")
    timeout_seconds: float = key(30.0, positive, "Longest time one speed test may take.")
    seconds: float = key(
        10.0, phase_seconds, "Self-hosted test: seconds each way (1 to 30; within timeout)."
    )
    streams: int = key(
        4, stream_count, "Self-hosted test: parallel connections each way (1 to 16)."
    )


@dataclass(frozen=True, slots=True)
class AvailabilityConfig:
    # none: the broker's host:port, the school's own collector side, not third parties
    targets: tuple[str, ...] = key(
        (), targets, "host:port targets for availability checks; none = the broker's."
    )
    timeout_seconds: float = key(3.0, positive, "Timeout of one availability check.")


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    max_rows: int = key(20000, positive_int, "Most reports kept while the broker is away.")
    max_mb: float = key(50.0, positive, "Most outbox payload bytes, in MB.")
    max_inflight: int = key(20, positive_int, "Most reports awaiting the broker's ack.")
    drain_per_second: float = key(20.0, non_negative, "Most reports sent per second; 0 = no limit.")
    hold_retry_min_seconds: float = key(
        10.0, positive, "First wait before a report held for want of a collector is tried again."
    )
    hold_retry_max_seconds: float = key(300.0, positive, "Longest such wait (it doubles).")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole agent configuration."""

    state_dir: str = key(default_state_dir(), path, "Directory for device id and outbox.")
    log_level: str = key("info", log_level, "debug, info, warning or error.")
    log_file: str | None = key(None, optional_path, "Also log to this file (rotated at 1 MB).")
    school: SchoolConfig = field(default_factory=SchoolConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    availability: AvailabilityConfig = field(default_factory=AvailabilityConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    source: str = field(default="defaults", compare=False)

    @property
    def school_id(self) -> str:
        return self.school.school_id or UNENROLLED

    @property
    def enrolled(self) -> bool:
        return self.school.school_id is not None

    @property
    def availability_targets(self) -> tuple[str, ...]:
        """What the availability probe connects to: `availability.targets`, or when none are
        set the broker's host:port (every agent knows it, and it is the school's own side)."""
        if self.availability.targets:
            return self.availability.targets
        broker = self.broker.settings()
        host = f"[{broker.host}]" if ":" in broker.host else broker.host
        return (f"{host}:{broker.port}",)


SECTIONS: dict[str, type[Any]] = {
    "school": SchoolConfig,
    "broker": BrokerConfig,
    "schedule": ScheduleConfig,
    "bandwidth": BandwidthConfig,
    "availability": AvailabilityConfig,
    "outbox": OutboxConfig,
}


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One documented config key."""

    dotted: str
    env: str
    default: Any
    doc: str


def env_name(dotted: str) -> str:
    """The environment variable overriding a key: "schedule.heartbeat_minutes" ->
    EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES."""
    return (ENV_PREFIX + dotted.replace(".", "_")).upper()


def all_keys() -> Iterator[KeyInfo]:
    """Every config key with its environment variable, default and one-line meaning."""
    for f in fields(AgentConfig):
        if "parse" in f.metadata:
            yield KeyInfo(f.name, env_name(f.name), f.default, f.metadata["doc"])
        elif f.name in SECTIONS:
            for g in fields(SECTIONS[f.name]):
                dotted = f"{f.name}.{g.name}"
                yield KeyInfo(dotted, env_name(dotted), g.default, g.metadata["doc"])


# --- loading -----------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value as the user wrote it (TOML-like), for error messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else _show(v) for v in value) + "]"
    return repr(value)


def _parse_section(
    cls: type[Any], name: str | None, raw: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    known = set()
    for f in fields(cls):
        if "parse" not in f.metadata:
            continue
        known.add(f.name)
        dotted = f"{name}.{f.name}" if name else f.name
        variable = env_name(dotted)
        if variable in env:
            value: object = env[variable]
            where = f"environment variable {variable}"
        elif f.name in raw:
            value, where = raw[f.name], ""
        else:
            continue
        try:
            values[f.name] = f.metadata["parse"](value)
        except ValueError as e:
            origin = f" (from {where})" if where else ""
            shown = "***" if f.name == "password" else _show(value)
            problems.append(redact(f"config key '{dotted}' has value '{shown}'{origin}: {e}"))
    for extra in raw:
        if extra not in known and not (name is None and extra in SECTIONS):
            dotted = f"{name}.{extra}" if name else extra
            problems.append(f"config key '{dotted}' is not a known key (misspelt?)")
    return values, problems


def parse(
    raw: Mapping[str, Any], env: Mapping[str, str] | None = None, source: str = "defaults"
) -> AgentConfig:
    """Build and validate a config from a TOML mapping and the environment, or raise ConfigError."""
    env = os.environ if env is None else env
    top, problems = _parse_section(AgentConfig, None, raw, env)
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section_raw = raw.get(name, {})
        if not isinstance(section_raw, Mapping):
            problems.append(
                f"config key '{name}' has value '{_show(section_raw)}': must be a table"
            )
            section_raw = {}
        values, more = _parse_section(cls, name, section_raw, env)
        problems.extend(more)
        sections[name] = cls(**values)
    problems.extend(unknown_variables(env, {k.env for k in all_keys()} | {CONFIG_ENV}))
    broker = sections["broker"]
    school = sections["school"].school_id
    url = parse_broker_url(broker.url)
    if school and broker.username is None and url.username is None and (
        broker.password or url.password
    ):
        # the shipped ACL's convention: one user per school, named by the school id
        sections["broker"] = replace(broker, username=school)
    config = AgentConfig(**top, **sections, source=source)
    if not problems:  # keys that must agree are compared once each is right on its own
        problems.extend(cross_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (then it must exist)."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return default_config_path(), False


def load(
    path: Path | None = None, *, required: bool = True, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Read the TOML file (if any) and the environment into a validated config."""
    raw: dict[str, Any] = {}
    source = "defaults and environment"
    if path is not None:
        try:
            text = read_text(path)
            raw = tomllib.loads(text)
            source = str(path)
        except FileNotFoundError:
            if required:
                raise ConfigError([f"config file {path} does not exist"]) from None
        except tomllib.TOMLDecodeError as e:
            problem = f"config file {path} is not valid TOML: {e}{toml_hint(text, e)}"
            raise ConfigError([problem]) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError([f"cannot read config file {path}: {e}"]) from None
    return parse(raw, env, source)

