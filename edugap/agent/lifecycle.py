"""The agent's side of the OS end-of-support table: naming Windows versions as the table does.

The table itself and its lookup are in `edugap.protocol.lifecycle` (the collector decides from
them); the agent reports the OS name and version, and its own `out_of_support` is a hint that
`edugap-agent once` shows.
"""

from __future__ import annotations

from edugap.protocol.lifecycle import (
    COLUMNS,
    EDITIONS,
    Lifecycle,
    LifecycleError,
    default_table,
    load_table,
    lookup,
    parse_table,
    support_status,
)

__all__ = [
    "COLUMNS",
    "EDITIONS",
    "Lifecycle",
    "LifecycleError",
    "default_table",
    "load_table",
    "lookup",
    "parse_table",
    "support_status",
    "windows_os",
]

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
