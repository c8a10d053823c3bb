"""Operating-system end-of-support dates, from the vendors' published lifecycles.

The dates live in `edugap/agent/data/os_lifecycle.csv` (one row per OS version and edition group),
so a new release is one line of data. A lookup that finds nothing answers None: the collector
then counts the OS as unknown, never as supported.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

COLUMNS = ("os", "version", "edition", "end_of_support", "note")
EDITIONS = ("", "consumer", "enterprise", "ltsc")
_CONSUMER = {"home", "pro", "professional", "core", "se", "cloudedition"}
_ENTERPRISE = {"enterprise", "education", "iot", "iotenterprise"}


class LifecycleError(ValueError):
    """The lifecycle table has a bad line; the message names the line and the value."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One row of the table: until when the vendor supports this OS version."""

    os: str
    version: str
    edition: str
    end_of_support: date
    note: str

    def supported_on(self, day: date) -> bool:
        return day <= self.end_of_support


def parse_table(text: str, source: str = "os_lifecycle.csv") -> list[Lifecycle]:
    """Rows of a lifecycle CSV ('#' lines are comments); LifecycleError names a bad row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LifecycleError(f"{source}: header must be {','.join(COLUMNS)}")
    rows: list[Lifecycle] = []
    for number, raw in enumerate(reader, start=2):
        edition = (raw["edition"] or "").strip().lower()
        if edition not in EDITIONS:
            raise LifecycleError(f"{source}: row {number}: edition {edition!r} not in {EDITIONS}")
        try:
            end = date.fromisoformat((raw["end_of_support"] or "").strip())
        except ValueError:
            raise LifecycleError(
                f"{source}: row {number}: end_of_support {raw['end_of_support']!r} "
                "is not YYYY-MM-DD"
            ) from None
        rows.append(
            Lifecycle(
                os=_os_key(raw["os"] or ""),
                version=_version_key(raw["version"] or ""),
                edition=edition,
                end_of_support=end,
                note=(raw["note"] or "").strip(),
            )
        )
    return rows


@cache
def default_table() -> tuple[Lifecycle, ...]:
    """The table shipped with the agent."""
    # A plain file next to this module (the agent is always installed unzipped, in a venv):
    # importlib.resources would load zipfile and its readers into the service for one read.
    path = Path(__file__).with_name("data") / "os_lifecycle.csv"
    return tuple(parse_table(path.read_text(encoding="utf-8"), source=str(path)))


def load_table(path: Path) -> list[Lifecycle]:
    """A table from a file (an operator's newer copy)."""
    return parse_table(path.read_text(encoding="utf-8"), source=str(path))


def _os_key(name: str) -> str:
    lowered = name.strip().lower()
    for family in ("windows", "ubuntu", "debian"):
        if family in lowered:
            return family
    return lowered


def _version_key(version: str) -> str:
    return re.sub(r"\s+", " ", version.strip().lower())


def _edition_of(version_key: str) -> str | None:
    tokens = set(version_key.replace("-", " ").split())
    if tokens & {"ltsc", "ltsb"}:
        return "ltsc"
    if tokens & _CONSUMER:  # "Pro Education" follows the Pro schedule
        return "consumer"
    if tokens & _ENTERPRISE:
        return "enterprise"
    return None


def _matches(version_key: str, row_version: str) -> bool:
    return version_key == row_version or version_key.startswith(
        (row_version + " ", row_version + ".")
    )


def lookup(
    name: str, version: str, table: tuple[Lifecycle, ...] | list[Lifecycle] | None = None
) -> Lifecycle | None:
    """The row for this OS name and version ("Windows", "11 23H2 Pro"; "Ubuntu", "24.04").

    The most specific matching version wins; when the edition is unknown and editions differ,
    the earliest date wins, so an unknown edition is never reported as supported for longer
    than its vendor promises.
    """
    rows = default_table() if table is None else table
    os_key, version_key = _os_key(name), _version_key(version)
    candidates = [r for r in rows if r.os == os_key and _matches(version_key, r.version)]
    if not candidates:
        return None
    longest = max(len(r.version) for r in candidates)
    candidates = [r for r in candidates if len(r.version) == longest]
    edition = _edition_of(version_key)
    exact = [r for r in candidates if edition is not None and r.edition == edition]
    generic = [r for r in candidates if r.edition == ""]
    pool = exact or generic or candidates
    return min(pool, key=lambda r: r.end_of_support)


def support_status(
    name: str,
    version: str,
    today: date,
    table: tuple[Lifecycle, ...] | list[Lifecycle] | None = None,
) -> tuple[date | None, bool | None]:
    """(end_of_support, out_of_support) for this OS on `today`; (None, None) when unknown."""
    row = lookup(name, version, table)
    if row is None:
        return None, None
    return row.end_of_support, not row.supported_on(today)


# --- naming Windows versions as the table does ---------------------------------------------

# Build number -> feature version, from Microsoft's release information pages.
_WIN10_BUILDS = {
    10240: "1507", 10586: "1511", 14393: "1607", 15063: "1703", 16299: "1709", 17134: "1803",
    17763: "1809", 18362: "1903", 18363: "1909", 19041: "2004", 19042: "20H2", 19043: "21H1",
    19044: "21H2", 19045: "22H2",
}  # fmt: skip
_WIN11_BUILDS = {22000: "21H2", 22621: "22H2", 22631: "23H2", 26100: "24H2", 26200: "25H2"}
_LTSC = {14393: "10 LTSB 2016", 17763: "10 LTSC 2019", 19044: "10 LTSC 2021", 26100: "11 LTSC 2024"}
_SERVER = {
    6001: "Server 2008", 7601: "Server 2008 R2", 9200: "Server 2012", 9600: "Server 2012 R2",
    14393: "Server 2016", 17763: "Server 2019", 20348: "Server 2022", 26100: "Server 2025",
}  # fmt: skip
_EDITION_NAMES = {
    "core": "Home", "coresinglelanguage": "Home", "corecountryspecific": "Home",
    "professional": "Pro", "professionaleducation": "Pro Education",
    "professionalworkstation": "Pro", "cloudedition": "SE", "education": "Education",
    "enterprise": "Enterprise", "iotenterprise": "IoT Enterprise",
}  # fmt: skip


def windows_os(release: str, version: str, edition: str) -> tuple[str, str]:
    """("Windows", "11 23H2 Pro") from platform.release(), .version() and .win32_edition().

    Python reports release "10" on Windows 11 too; the build number (>= 22000) tells them apart.
    """
    try:
        build = int(version.split(".")[2])
    except (IndexError, ValueError):
        build = 0
    edition_key = edition.strip().lower()
    if edition_key not in _EDITION_NAMES and edition_key.endswith("n"):
        edition_key = edition_key[:-1]  # "EnterpriseN", "EducationN": the N editions
    if "server" in edition_key:
        return "Windows", _SERVER.get(build, f"Server {release}".strip())
    if edition_key.endswith("enterprises") and build in _LTSC:  # "EnterpriseS" is LTSC
        return "Windows", _LTSC[build]
    label = _EDITION_NAMES.get(edition_key, edition.strip())
    if build >= 22000:
        feature = _WIN11_BUILDS.get(build, "")
        major = "11"
    elif release == "10" or build >= 10240:
        feature = _WIN10_BUILDS.get(build, "")
        major = "10"
    else:
        return "Windows", " ".join(p for p in (release, label) if p)
    return "Windows", " ".join(p for p in (major, feature, label) if p)
