"""What the agent keeps in its state directory besides the outbox: device id and daily usage."""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from edugap.protocol.messages import valid_id

log = logging.getLogger(__name__)

DEVICE_ID_FILE = "device_id"
USAGE_FILE = "bandwidth_usage.json"
# shown by `once`, `status` and `speedtest` before the service has ever made a device id
NOT_INSTALLED = "not-installed"


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_device_id() -> str:
    """A random device id. Never derived from hardware: cloned lab images share hardware UUIDs."""
    return uuid.uuid4().hex


def read_device_id(state_dir: Path) -> str | None:
    """The device id kept in the state directory, or None when there is none (or it is bad)."""
    try:
        value = (state_dir / DEVICE_ID_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value if valid_id(value) else None


def device_id(state_dir: Path) -> str:
    """The device id, generated once on first use and kept in the state directory."""
    existing = read_device_id(state_dir)
    if existing:
        return existing
    path = state_dir / DEVICE_ID_FILE
    if path.exists():
        # keep the unreadable file for whoever investigates, rather than silently losing it
        log.warning("device id file %s is not a valid id; generating a new one", path)
        os.replace(path, path.with_name(path.name + ".bad"))
    state_dir.mkdir(parents=True, exist_ok=True)
    value = new_device_id()
    _write_atomic(path, value + "\n")
    log.info("generated device id %s in %s", value, path)
    return value


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Speed-test traffic and test count on one local day, kept across restarts."""

    day: date
    bytes_used: int = 0
    tests: int = 0

    def on(self, day: date) -> DailyUsage:
        """This usage if it is for `day`, else a fresh one (a new day starts at zero)."""
        return self if self.day == day else DailyUsage(day)

    def add(self, bytes_used: int) -> DailyUsage:
        return DailyUsage(self.day, self.bytes_used + bytes_used, self.tests + 1)


def read_usage(state_dir: Path, today: date) -> DailyUsage:
    """Today's usage, or zero when the file is missing, bad, or from another day."""
    try:
        raw = json.loads((state_dir / USAGE_FILE).read_text(encoding="utf-8"))
        usage = DailyUsage(
            date.fromisoformat(raw["day"]), int(raw["bytes_used"]), int(raw["tests"])
        )
    except FileNotFoundError:
        return DailyUsage(today)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable %s: %s", state_dir / USAGE_FILE, e)
        return DailyUsage(today)
    return usage.on(today)


def write_usage(state_dir: Path, usage: DailyUsage) -> None:
    record = {"day": usage.day.isoformat(), "bytes_used": usage.bytes_used, "tests": usage.tests}
    _write_atomic(state_dir / USAGE_FILE, json.dumps(record) + "\n")
