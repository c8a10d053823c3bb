"""What the machine is, which versions of the real parts ran, and how loaded it was."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def os_name() -> str:
    try:
        release = Path("/etc/os-release").read_text()
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)', release, re.M)
        if match:
            return f"{match.group(1)} ({platform.system()} {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def machine_lines() -> list[str]:
    """Markdown list lines: CPU model, cores, RAM, OS, Python."""
    ram = ram_gib()
    python = sys.executable.replace(str(ROOT) + "/", "")
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- RAM: {'unknown' if ram is None else f'{ram:.1f} GiB'}",
        f"- OS: {os_name()}",
        f"- Python: {platform.python_version()} ({python})",
    ]


def machine_line(*parts: str) -> str:
    """One line for a results file: CPU, cores, RAM, OS, Python, then `parts` (versions...)."""
    ram = ram_gib()
    words = [
        f"{cpu_model()}, {os.cpu_count()} cores",
        *([f"{ram:.0f} GiB RAM"] if ram is not None else []),
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
        *parts,
    ]
    return ", ".join(words)


def versions(
    *, mosquitto: bool = False, sqlite: bool = False, postgres_url: str | None = None,
    packages: tuple[str, ...] = (),
) -> list[str]:  # fmt: skip
    """Versions of the real parts a bench ran, for `machine_line(*versions(...))`."""
    out = []
    if mosquitto:
        out.append(mosquitto_version())
    if sqlite:
        out.append(f"SQLite {sqlite3.sqlite_version}")
    if postgres_url:
        out.append(f"PostgreSQL {postgres_version(postgres_url)}")
    for name in packages:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return out


def mosquitto_version() -> str:
    from tests.realparts import find_mosquitto

    exe = find_mosquitto()
    if exe is None:
        return "mosquitto (not found)"
    done = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False)
    first = done.stdout.splitlines()[:1]
    return first[0] if first else "mosquitto ?"


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def load_average() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]
