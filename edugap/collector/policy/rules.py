"""The shortfall policy: every threshold in one TOML file, checked at load with key and value named.

The defaults and their sources live in policy_default.toml next to this module (one place: the
"# source:" comment above each key is what `edugap policy show` prints). A user's file only
needs the keys it changes; an unknown section or key, or a bad value, raises PolicyError.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import time
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edugap.protocol.lifecycle import Lifecycle, LifecycleError, default_table, load_table

DEFAULT_FILE = Path(__file__).with_name("policy_default.toml")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_STATISTIC = re.compile(r"^(median|mean|p([1-9][0-9]?))$")
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the file, the key and the value."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Every threshold the evaluation uses; field names are the TOML keys (see SECTIONS)."""

    # [required]
    min_mbps: float
    per_student_mbps: float
    unknown_gap: str  # "full" | "zero"
    # [connectivity]
    bad_below_mbps: float
    unknown_after_days: int
    # [statistic]
    statistic: str  # "median" | "mean" | "p1".."p99"
    window_days: int
    # [availability]
    target_pct: float
    school_hours: str  # "HH:MM-HH:MM", local time
    school_days: tuple[str, ...]
    timezone: str
    # [isp]
    compliance_share: float
    # [monitoring]
    live_days: int
    drop_off_days: int
    # [computers]
    students_per_computer: float
    min_ram_gb: float
    ram_slack_pct: float
    min_cores: int
    no_inventory_gap: str  # "full" | "zero"
    os_lifecycle_file: str  # "" = the table shipped in edugap/protocol/data
    # [priority]
    students_exponent: float
    bandwidth: float
    computers: float
    availability: float
    os_upgrade: float
    not_monitored: float

    def required_mbps(self, students: int) -> float:
        """The download a school of `students` needs: max(min_mbps, per_student x students)."""
        return max(self.min_mbps, self.per_student_mbps * students)

    @property
    def hours(self) -> tuple[time, time]:
        """School hours as local start and end times (end exclusive)."""
        m = _HOURS.match(self.school_hours)
        assert m is not None  # checked at load
        end = time(23, 59, 59) if m[3] == "24" else time(int(m[3]), int(m[4]))
        return time(int(m[1]), int(m[2])), end

    @property
    def weekdays(self) -> frozenset[int]:
        """School days as datetime.weekday() numbers (Monday 0)."""
        return frozenset(DAYS.index(d) for d in self.school_days)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def os_table(self) -> tuple[Lifecycle, ...]:
        """The OS end-of-support table in force: `os_lifecycle_file`, else the shipped one.

        Read again when the file changes, so an operator's update applies at the next
        evaluation; a file that became unreadable raises PolicyError (the evaluation fails and
        the previous snapshot stays)."""
        if not self.os_lifecycle_file:
            return default_table()
        path = Path(self.os_lifecycle_file)
        try:
            return _table_at(path, path.stat().st_mtime_ns)
        except OSError as e:
            raise PolicyError(
                f"policy key 'computers.os_lifecycle_file' has value {str(path)!r}: "
                f"cannot read it: {e.strerror or e}"
            ) from None
        except LifecycleError as e:
            raise PolicyError(
                f"policy key 'computers.os_lifecycle_file' has value {str(path)!r}: {e}"
            ) from None

    @property
    def min_memory_mb(self) -> float:
        """The RAM a usable computer must report, in MiB, after the slack."""
        return self.min_ram_gb * 1024 * (1 - self.ram_slack_pct / 100)


@lru_cache(maxsize=4)
def _table_at(path: Path, mtime_ns: int) -> tuple[Lifecycle, ...]:
    return tuple(load_table(path))


SECTIONS: dict[str, tuple[str, ...]] = {
    "required": ("min_mbps", "per_student_mbps", "unknown_gap"),
    "connectivity": ("bad_below_mbps", "unknown_after_days"),
    "statistic": ("statistic", "window_days"),
    "availability": ("target_pct", "school_hours", "school_days", "timezone"),
    "isp": ("compliance_share",),
    "monitoring": ("live_days", "drop_off_days"),
    "computers": (
        "students_per_computer",
        "min_ram_gb",
        "ram_slack_pct",
        "min_cores",
        "no_inventory_gap",
        "os_lifecycle_file",
    ),
    "priority": (
        "students_exponent",
        "bandwidth",
        "computers",
        "availability",
        "os_upgrade",
        "not_monitored",
    ),
}


# --- value checks: each returns the parsed value or raises ValueError saying what is wanted ----


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[Any], float]:
    def check(raw: Any) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError("expected a number")
        if raw < low or (low_open and raw == low) or raw > high:
            bound = f"> {low}" if low_open else f">= {low}"
            raise ValueError(
                f"expected a number {bound}" + (f" and <= {high}" if high < 1e300 else "")
            )
        return float(raw)

    return check


def _integer(low: int) -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("expected a whole number")
        if raw < low:
            raise ValueError(f"expected a whole number >= {low}")
        return raw

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        if raw not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(raw)

    return check


def _statistic(raw: Any) -> str:
    if not isinstance(raw, str) or not _STATISTIC.match(raw):
        raise ValueError("expected median, mean or a percentile p1..p99")
    return raw


def _school_hours(raw: Any) -> str:
    m = _HOURS.match(raw) if isinstance(raw, str) else None
    if m is None or (m[3] == "24" and m[4] != "00"):
        raise ValueError('expected "HH:MM-HH:MM", e.g. "07:00-17:00"')
    if (int(m[1]), int(m[2])) >= (int(m[3]), int(m[4])):
        raise ValueError("the start must be before the end")
    return str(raw)


def _school_days(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or any(d not in DAYS for d in raw):
        raise ValueError(f"expected a non-empty list of {', '.join(DAYS)}")
    if len(set(raw)) != len(raw):
        raise ValueError("a day is listed twice")
    return tuple(raw)


def _timezone(raw: Any) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError("expected an IANA time zone, e.g. Asia/Ho_Chi_Minh") from None
    return str(raw)


def _lifecycle_file(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError('expected the path of an OS lifecycle CSV, or "" for the shipped one')
    if raw:
        try:
            load_table(Path(raw))
        except OSError as e:
            raise ValueError(f"cannot read it: {e.strerror or e}") from None
        except LifecycleError as e:
            raise ValueError(str(e)) from None
    return raw


_WEIGHT = _number(0.0)
CHECKS: dict[str, Callable[[Any], Any]] = {
    "min_mbps": _number(0.0, low_open=True),
    "per_student_mbps": _number(0.0),
    "unknown_gap": _choice("full", "zero"),
    "bad_below_mbps": _number(0.0),
    "unknown_after_days": _integer(1),
    "statistic": _statistic,
    "window_days": _integer(1),
    "target_pct": _number(0.0, 100.0, low_open=True),
    "school_hours": _school_hours,
    "school_days": _school_days,
    "timezone": _timezone,
    "compliance_share": _number(0.0, 1.0, low_open=True),
    "live_days": _integer(1),
    "drop_off_days": _integer(1),
    "students_per_computer": _number(0.0, low_open=True),
    "min_ram_gb": _number(0.0),
    "ram_slack_pct": _number(0.0, 50.0),
    "min_cores": _integer(0),
    "no_inventory_gap": _choice("full", "zero"),
    "os_lifecycle_file": _lifecycle_file,
    "students_exponent": _number(0.0, 2.0),
    "bandwidth": _WEIGHT,
    "computers": _WEIGHT,
    "availability": _WEIGHT,
    "os_upgrade": _WEIGHT,
    "not_monitored": _WEIGHT,
}


def _flatten(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Section tables -> {key: raw value}, refusing unknown sections and keys."""
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise PolicyError(
                f"{origin}: unknown policy section [{section}] (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(table, dict):
            raise PolicyError(f"{origin}: policy key '{section}' must be a [{section}] table")
        for name, raw in table.items():
            if name not in SECTIONS[section]:
                known = ", ".join(SECTIONS[section])
                raise PolicyError(
                    f"{origin}: unknown policy key '{section}.{name}' (known in [{section}]: "
                    f"{known})"
                )
            flat[name] = raw
    return flat


def _section_of(name: str) -> str:
    return next(s for s, names in SECTIONS.items() if name in names)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise PolicyError(f"cannot read policy file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"policy file {path} is not valid TOML: {e}") from e


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy and where each value came from (the user's file, or the default's source)."""

    policy: Policy
    origins: dict[str, str]


def load(path: Path | str | None = None) -> LoadedPolicy:
    """The defaults overlaid with the file at `path` (if any), validated. Raises PolicyError."""
    values = _flatten(_read_toml(DEFAULT_FILE), str(DEFAULT_FILE))
    origins = {name: f"default: {src}" for name, src in default_sources().items()}
    if path is not None:
        user = _flatten(_read_toml(Path(path)), str(path))
        table = user.get("os_lifecycle_file")
        if isinstance(table, str) and table and not Path(table).is_absolute():
            user["os_lifecycle_file"] = str(Path(path).parent / table)  # beside the policy
        values.update(user)
        origins.update({name: f"from {path}" for name in user})
    parsed: dict[str, Any] = {}
    origin_name = str(path) if path is not None else str(DEFAULT_FILE)
    for name, check in CHECKS.items():
        raw = values[name]
        try:
            parsed[name] = check(raw)
        except ValueError as e:
            where = origin_name if origins[name].startswith("from ") else str(DEFAULT_FILE)
            raise PolicyError(
                f"{where}: policy key '{_section_of(name)}.{name}' has value {raw!r}: {e}"
            ) from None
    if parsed["drop_off_days"] < parsed["live_days"]:
        raise PolicyError(
            f"{origin_name}: policy key 'monitoring.drop_off_days' has value "
            f"{parsed['drop_off_days']!r}: must be >= monitoring.live_days ({parsed['live_days']})"
        )
    return LoadedPolicy(Policy(**parsed), origins)


def load_policy(path: Path | str | None = None) -> Policy:
    """Just the policy (see `load`)."""
    return load(path).policy


@cache
def default_sources() -> dict[str, str]:
    """key -> the "# source:" comment above it in policy_default.toml."""
    sources: dict[str, str] = {}
    pending = ""
    for line in DEFAULT_FILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("# source:"):
            pending = stripped.removeprefix("# source:").strip()
        elif "=" in stripped and not stripped.startswith("#"):
            sources[stripped.split("=", 1)[0].strip()] = pending
            pending = ""
    return sources


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def to_toml(loaded: LoadedPolicy) -> str:
    """The policy in force as TOML, each value preceded by a comment naming its origin."""
    lines: list[str] = []
    names = {f.name for f in fields(Policy)}
    for section, keys in SECTIONS.items():
        lines.append(f"[{section}]")
        for name in keys:
            assert name in names
            lines.append(f"# {loaded.origins[name]}")
            lines.append(f"{name} = {_toml_value(getattr(loaded.policy, name))}")
        lines.append("")
    return "\n".join(lines)
