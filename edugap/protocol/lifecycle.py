"""Operating-system end-of-support dates, from the vendors' published lifecycles.

The dates live in `edugap/protocol/data/os_lifecycle.csv` (one row per OS version and edition
group), so a new release is one line of data. The table belongs to the protocol because both
programs read it: the collector decides from it whether the OS an inventory names is out of
support (an operator can give it a newer copy), the agent only shows its own guess in `once`.
A lookup that finds nothing answers None: the OS is unknown, never counted as supported.
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
    """The table shipped in the package."""
    # A plain file beside this module (edugap is always installed unzipped, in a venv):
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
