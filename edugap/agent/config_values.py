"""Config value parsers: a raw TOML value or environment string -> a typed value.

Each parser raises ValueError with the rule the value broke ("must be a positive number");
edugap.agent.config adds the key and the value to make the message a user can act on.
"""

from __future__ import annotations

import re
from datetime import time, timedelta, timezone, tzinfo
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edugap.agent.probes.availability import parse_target
from edugap.protocol.messages import valid_id
from edugap.protocol.mqtt import BrokerUrlError, parse_broker_url

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


def path(value: object) -> str:
    """A file or directory name; a control character in it is a Windows path whose single
    backslashes TOML read as escapes ("C:\\temp" holds a tab)."""
    name = text(value)
    if any(ord(c) < 32 for c in name):
        raise ValueError(
            "holds a tab, newline or other control character: in double quotes a Windows "
            "path needs each backslash doubled (\"C:\\\\ProgramData\\\\edugap\"), or use single "
            "quotes ('C:\\ProgramData\\edugap')"
        )
    return name


def optional_path(value: object) -> str | None:
    return path(value) or None


def optional_file(value: object) -> str | None:
    path = optional_path(value)
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


def phase_seconds(value: object) -> float:
    number = _number(value)
    if not 1 <= number <= 30:  # the endpoint serves streams of at most 30 s
        raise ValueError("must be a number of seconds from 1 to 30")
    return number


def stream_count(value: object) -> int:
    number = positive_int(value)
    if number > 16:
        raise ValueError("must be a whole number from 1 to 16")
    return number


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
    """host:port targets; none (an empty list) means the broker's own host and port."""
    out = tuple(item.strip() for item in _list(value))
    for item in out:
        # the probe's own parser: a config that passes here cannot fail the probe at start
        parse_target(item)
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
