"""Agent configuration: one TOML file, every key overridable by an environment variable.

The rule for environment variables: `EDUGAP_AGENT_<SECTION>_<KEY>` in upper case, for example
`EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES=5`; top-level keys drop the section
(`EDUGAP_AGENT_STATE_DIR`). Lists are comma-separated in the environment.

Every key is a dataclass field below, with its parser and its documentation in the field's
metadata, so the documentation test can check that docs/agent.md names each one.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.mqtt import BrokerSettings, BrokerUrlError, parse_broker_url
from agent.protocol import valid_id

ENV_PREFIX = "EDUGAP_AGENT_"
CONFIG_ENV = "EDUGAP_AGENT_CONFIG"
UNENROLLED = "unenrolled"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BACKENDS = ("selfhosted", "speedtest.net")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Windows has no system time-zone database; Python then needs the `tzdata` package. These zones
# have no daylight saving time, so a fixed offset is exact and the agent works without it.
_FIXED_ZONES = {
    "Asia/Ho_Chi_Minh": 7,
    "Asia/Saigon": 7,
    "Asia/Bangkok": 7,
    "Asia/Jakarta": 7,
    "UTC": 0,
    "Etc/UTC": 0,
}


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


# --- value parsers: raw TOML value or environment string -> typed value, or ValueError(why) ---


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    raise ValueError("must be a number")


def positive(value: object) -> float:
    number = _number(value)
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("must be a positive number")
    return number


def non_negative(value: object) -> float:
    number = _number(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a number >= 0")
    return number


def positive_int(value: object) -> int:
    number = _number(value)
    if number != int(number) or number < 1:
        raise ValueError("must be a whole number >= 1")
    return int(number)


def non_negative_int(value: object) -> int:
    number = _number(value)
    if number != int(number) or number < 0:
        raise ValueError("must be a whole number >= 0")
    return int(number)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def optional_text(value: object) -> str | None:
    return text(value) or None


def optional_file(value: object) -> str | None:
    path = optional_text(value)
    if path is not None and not Path(path).is_file():
        raise ValueError("no such file")
    return path


def school_id(value: object) -> str | None:
    school = optional_text(value)
    if school is not None and not valid_id(school):
        raise ValueError("must be 1 to 64 letters, digits, '-' or '_'")
    return school


def broker_url(value: object) -> str:
    url = text(value)
    try:
        parse_broker_url(url)
    except BrokerUrlError as e:
        raise ValueError(str(e).split(": ", 1)[-1]) from None
    return url


def mqtt_version(value: object) -> int:
    version = _number(value) if not isinstance(value, str) else value.strip()
    if version in (5, 5.0, "5"):
        return 5
    if version in (3, 3.0, 4, "3", "4", "3.1.1"):
        return 3
    raise ValueError("must be 5 (MQTT 5) or 3 (MQTT 3.1.1)")


def time_range(value: object) -> tuple[time, time]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text(value))
    if not match:
        raise ValueError("must look like '07:00-17:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError("must be times of day like '07:00-17:00'")
    start, end = time(h1, m1), time(23, 59, 59) if h2 == 24 else time(h2, m2)
    if end <= start:
        raise ValueError("the end must be after the start")
    return start, end


def days(value: object) -> tuple[str, ...]:
    items = _list(value)
    out: list[str] = []
    for item in items:
        lo, _, hi = item.strip().lower().partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise ValueError("must be day names mon..sun, or ranges like 'mon-fri'")
        start, end = DAYS.index(lo), DAYS.index(hi or lo)
        if end < start:
            raise ValueError(f"day range {item!r} runs backwards")
        out.extend(d for d in DAYS[start : end + 1] if d not in out)
    if not out:
        raise ValueError("must name at least one day")
    return tuple(d for d in DAYS if d in out)


def zone(value: object) -> str:
    load_zone(text(value))
    return text(value)


def load_zone(name: str) -> tzinfo:
    """An IANA zone, or a fixed offset like '+07:00'; ValueError names what is wrong."""
    offset = re.fullmatch(r"(?:UTC)?([+-])(\d{1,2}):?(\d{2})?", name.strip())
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        hours, minutes = int(offset.group(2)), int(offset.group(3) or 0)
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name in _FIXED_ZONES:
            return timezone(timedelta(hours=_FIXED_ZONES[name]))
        raise ValueError(
            "unknown time zone (use an IANA name like 'Asia/Ho_Chi_Minh' or an offset like "
            "'+07:00'; on Windows install the 'tzdata' package)"
        ) from None


def backend(value: object) -> str:
    name = text(value).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"must be one of {', '.join(BACKENDS)}")
    return name


def http_url(value: object) -> str | None:
    url = optional_text(value)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
    return url


def targets(value: object) -> tuple[str, ...]:
    out = []
    for item in _list(value):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"target {item!r} must be host:port")
        out.append(item.strip())
    if not out:
        raise ValueError("must name at least one host:port")
    return tuple(out)


def log_level(value: object) -> str:
    level = text(value).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _list(value: object) -> list[str]:
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("must be a list of strings")


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
    keepalive: int = key(60, positive_int, "Seconds between MQTT keep-alive pings.")
    reconnect_min_seconds: int = key(1, positive_int, "First reconnect delay (then doubles).")
    reconnect_max_seconds: int = key(120, positive_int, "Longest reconnect delay.")

    def settings(self) -> BrokerSettings:
        """The broker settings the MQTT client factory takes (config keys win over the URL)."""
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
    role: bool = key(True, boolean, "Whether this computer runs speed tests.")
    backend: str = key("speedtest.net", backend, "selfhosted or speedtest.net.")
    server_url: str | None = key(None, http_url, "Self-hosted speed-test server URL.")
    daily_budget_mb: float = key(1000.0, positive, "Most speed-test traffic per day, in MB.")
    timeout_seconds: float = key(30.0, positive, "Longest time one speed test may take.")


@dataclass(frozen=True, slots=True)
class AvailabilityConfig:
    targets: tuple[str, ...] = key(
        ("8.8.8.8:53", "1.1.1.1:53"), targets, "host:port targets for availability checks."
    )
    timeout_seconds: float = key(3.0, positive, "Timeout of one availability check.")


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    max_rows: int = key(20000, positive_int, "Most reports kept while the broker is away.")
    max_mb: float = key(50.0, positive, "Most outbox payload bytes, in MB.")
    max_inflight: int = key(20, positive_int, "Most reports awaiting the broker's ack.")
    drain_per_second: float = key(20.0, non_negative, "Most reports sent per second; 0 = no limit.")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole agent configuration."""

    state_dir: str = key(default_state_dir(), text, "Directory for device id and outbox.")
    log_level: str = key("info", log_level, "debug, info, warning or error.")
    log_file: str | None = key(None, optional_text, "Also log to this file (rotated at 1 MB).")
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


def all_keys() -> Iterator[KeyInfo]:
    """Every config key with its environment variable, default and one-line meaning."""
    for f in fields(AgentConfig):
        if "parse" in f.metadata:
            yield KeyInfo(f.name, ENV_PREFIX + f.name.upper(), f.default, f.metadata["doc"])
        elif f.name in SECTIONS:
            for g in fields(SECTIONS[f.name]):
                env = f"{ENV_PREFIX}{f.name}_{g.name}".upper()
                yield KeyInfo(f"{f.name}.{g.name}", env, g.default, g.metadata["doc"])


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
        env_name = (ENV_PREFIX + dotted.replace(".", "_")).upper()
        if env_name in env:
            value: object = env[env_name]
            where = f"environment variable {env_name}"
        elif f.name in raw:
            value, where = raw[f.name], ""
        else:
            continue
        try:
            values[f.name] = f.metadata["parse"](value)
        except ValueError as e:
            origin = f" (from {where})" if where else ""
            problems.append(f"config key '{dotted}' has value '{_show(value)}'{origin}: {e}")
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
    config = AgentConfig(**top, **sections, source=source)
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def _cross_checks(config: AgentConfig) -> list[str]:
    problems = []
    broker, bandwidth = config.broker, config.bandwidth
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(broker, k)]
    if tls_files and not broker.url.startswith("mqtts://"):
        problems.append(
            f"config key 'broker.{tls_files[0]}' is set but 'broker.url' has value "
            f"'{broker.url}': TLS files need an mqtts:// URL"
        )
    if broker.key_file and not broker.cert_file:
        problems.append("config key 'broker.key_file' is set without 'broker.cert_file'")
    if broker.reconnect_max_seconds < broker.reconnect_min_seconds:
        problems.append(
            f"config key 'broker.reconnect_max_seconds' has value "
            f"'{broker.reconnect_max_seconds}': must be >= broker.reconnect_min_seconds"
        )
    if bandwidth.role and bandwidth.backend == "selfhosted" and not bandwidth.server_url:
        problems.append(
            "config key 'bandwidth.server_url' is missing: the selfhosted backend needs the "
            "speed-test server's URL"
        )
    return problems


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
            with path.open("rb") as f:
                raw = tomllib.load(f)
            source = str(path)
        except FileNotFoundError:
            if required:
                raise ConfigError([f"config file {path} does not exist"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"config file {path} is not valid TOML: {e}"]) from None
        except OSError as e:
            raise ConfigError([f"cannot read config file {path}: {e}"]) from None
    return parse(raw, env, source)


def with_overrides(config: AgentConfig, **sections: dict[str, Any]) -> AgentConfig:
    """A copy with some section fields replaced (used by commands like `once`)."""
    changes = {name: replace(getattr(config, name), **values) for name, values in sections.items()}
    return replace(config, **changes)
