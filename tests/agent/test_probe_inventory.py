"""Inventory probe on this machine and on fake sysfs trees; the OS lifecycle table."""

from __future__ import annotations

import getpass
import re
from datetime import UTC, date, datetime
from pathlib import Path

import psutil
import pytest

from edugap.agent import lifecycle
from edugap.agent.probes import Identity, InventoryProbe
from edugap.agent.probes.inventory import scrub_interface_name
from edugap.protocol import messages as protocol

ME = Identity(school_id="79-001", device_id="dev-7f3a", agent_version="0.1.0")
TODAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def fake_sysfs(tmp_path: Path, dmi: dict[str, str], battery: dict[str, str] | None) -> Path:
    root = tmp_path / "sys"
    (root / "class" / "power_supply").mkdir(parents=True)
    for name, value in dmi.items():
        write(root, f"class/dmi/id/{name}", value)
    if battery is not None:
        for name, value in battery.items():
            write(root, f"class/power_supply/BAT0/{name}", value)
    write(root, "class/power_supply/AC/type", "Mains")
    return root


def test_inventory_of_this_machine_is_plausible_and_private() -> None:
    report = InventoryProbe(clock=lambda: TODAY).collect(ME)

    assert report.memory_mb == psutil.virtual_memory().total // 2**20
    assert report.cpu.cores >= 1 and report.cpu.threads >= report.cpu.cores
    assert report.cpu.model
    assert report.os.name and report.os.version
    assert report.boot_time is not None and report.boot_time <= datetime.now(UTC)
    assert report.machine_kind in ("desktop", "laptop", "server", "unknown")
    assert report.system_disk_free_pct is not None and 0 <= report.system_disk_free_pct <= 100
    assert report.hardware_hash and report.hardware_hash != ME.device_id
    assert re.fullmatch(r"[0-9a-f]{64}", report.hardware_hash)
    for disk in report.disks:
        assert 0 <= disk.free_gb <= disk.total_gb
    names = {n.name for n in report.net}
    assert names and all(n.kind in ("wired", "wifi", "other") for n in report.net)
    assert [n.kind for n in report.net if n.name == "lo"] in ([], ["other"])

    wire = protocol.encode(report).decode().lower()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == psutil.AF_LINK and addr.address.strip("0:"):
                mac = addr.address.lower()
                assert mac not in wire and mac.replace(":", "") not in wire
    user = getpass.getuser().lower()
    assert user not in wire, f"user name {user!r} appears in the inventory"
    topic = protocol.topic_for(ME.school_id, ME.device_id, "inventory")
    assert protocol.decode(topic, protocol.encode(report)) == report


def test_dmi_and_battery_from_sysfs_make_a_laptop(tmp_path: Path) -> None:
    sysfs = fake_sysfs(
        tmp_path,
        {"chassis_type": "10", "bios_date": "03/15/2019", "product_uuid": "4c4c4544-0001"},
        {"type": "Battery", "capacity": "80", "energy_full": "36000000",
         "energy_full_design": "48000000"},
    )  # fmt: skip
    report = InventoryProbe(clock=lambda: TODAY, sysfs_root=sysfs).collect(ME)
    assert report.chassis_type == "Notebook"
    assert report.bios_date == "2019-03-15"
    assert report.machine_kind == "laptop"
    assert report.battery == protocol.Battery(percent=80.0, health_pct=75.0)


def test_battery_health_from_charge_counters(tmp_path: Path) -> None:
    sysfs = fake_sysfs(
        tmp_path,
        {},
        {"type": "Battery", "charge_now": "2000000", "charge_full": "4000000",
         "charge_full_design": "5000000"},
    )  # fmt: skip
    report = InventoryProbe(clock=lambda: TODAY, sysfs_root=sysfs).collect(ME)
    assert report.battery == protocol.Battery(percent=50.0, health_pct=80.0)
    assert report.machine_kind == "laptop"  # no DMI, but a battery
    assert report.chassis_type is None and report.bios_date is None


@pytest.mark.parametrize(
    ("chassis", "battery", "kind", "name"),
    [
        ("3", False, "desktop", "Desktop"),
        ("13", False, "desktop", "All in One"),
        ("23", False, "server", "Rack Mount Chassis"),
        ("31", True, "laptop", "Convertible"),
        ("2", False, "unknown", "Unknown"),
        (None, False, "unknown", None),
    ],
)
def test_machine_kind_from_chassis_type(
    tmp_path: Path, chassis: str | None, battery: bool, kind: str, name: str | None
) -> None:
    dmi = {"chassis_type": chassis} if chassis else {}
    bat = {"capacity": "99", "energy_full": "1", "energy_full_design": "1"} if battery else None
    report = InventoryProbe(sysfs_root=fake_sysfs(tmp_path, dmi, bat)).collect(ME)
    assert (report.machine_kind, report.chassis_type) == (kind, name)


def test_hardware_hash_follows_hardware_not_the_device(tmp_path: Path) -> None:
    one = fake_sysfs(tmp_path / "a", {"product_uuid": "uuid-1", "board_serial": "S1"}, None)
    two = fake_sysfs(tmp_path / "b", {"product_uuid": "uuid-2", "board_serial": "S1"}, None)
    first = InventoryProbe(sysfs_root=one).collect(ME)
    again = InventoryProbe(sysfs_root=one).collect(Identity("79-002", "dev-other", "0.2.0"))
    other = InventoryProbe(sysfs_root=two).collect(ME)
    assert first.hardware_hash == again.hardware_hash != other.hardware_hash


def test_interface_kinds_from_sysfs(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    (root / "class/net/wlp2s0/wireless").mkdir(parents=True)
    (root / "class/net/enp3s0").mkdir(parents=True)
    (root / "devices/virtual/net/docker0").mkdir(parents=True)
    probe = InventoryProbe(sysfs_root=root, platform_name="linux")
    assert probe.interface_kind("wlp2s0", loopback=False) == "wifi"
    assert probe.interface_kind("enp3s0", loopback=False) == "wired"
    assert probe.interface_kind("docker0", loopback=False) == "other"
    assert probe.interface_kind("lo", loopback=True) == "other"
    windows = InventoryProbe(platform_name="win32")
    assert windows.interface_kind("Wi-Fi", loopback=False) == "wifi"
    assert windows.interface_kind("Ethernet", loopback=False) == "wired"


def test_interface_names_lose_embedded_mac_addresses() -> None:
    assert scrub_interface_name("enx001122aabbcc", {"001122aabbcc"}) == "enx-mac"
    assert "001122aabbcc" not in scrub_interface_name("enx001122AABBCC", set())
    assert scrub_interface_name("eth0", {"001122aabbcc"}) == "eth0"


def test_os_release_and_lifecycle_flag(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Ubuntu"\nVERSION_ID="20.04"\nPRETTY_NAME="Ubuntu 20.04.6 LTS"\n')
    probe = InventoryProbe(clock=lambda: TODAY, os_release=release, platform_name="linux")
    report = probe.collect(ME)
    assert (report.os.name, report.os.version) == ("Ubuntu", "20.04")
    assert report.os.end_of_support == "2025-05-31" and report.os.out_of_support is True


# --- lifecycle ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "day", "end", "out"),
    [
        ("Windows", "7 Pro", date(2026, 11, 28), date(2020, 1, 14), True),
        ("Windows", "8.1", date(2026, 11, 28), date(2023, 1, 10), True),
        ("Windows", "10 22H2 Pro", date(2026, 11, 28), date(2025, 10, 14), True),
        ("Windows", "10 LTSC 2021", date(2026, 11, 28), date(2027, 1, 12), False),
        ("Windows", "11 23H2 Pro", date(2026, 11, 28), date(2025, 11, 11), True),
        ("Windows", "11 23H2 Education", date(2026, 11, 9), date(2026, 11, 10), False),
        ("Windows", "11 24H2 Home", date(2026, 11, 28), date(2026, 10, 13), True),
        ("Windows", "11 24H2 Enterprise", date(2026, 11, 28), date(2027, 10, 12), False),
        # unknown edition: the earlier (consumer) date, never a longer promise than the vendor's
        ("Windows", "11 24H2", date(2026, 11, 28), date(2026, 10, 13), True),
        ("Ubuntu", "24.04", date(2026, 11, 28), date(2029, 5, 31), False),
        ("Ubuntu", "24.04.1 LTS", date(2026, 11, 28), date(2029, 5, 31), False),
        ("Ubuntu", "18.04", date(2026, 11, 28), date(2023, 5, 31), True),
        ("Debian GNU/Linux", "12", date(2026, 11, 28), date(2028, 6, 30), False),
        ("Debian GNU/Linux", "10", date(2026, 11, 28), date(2024, 6, 30), True),
        ("Fedora Linux", "40", date(2026, 11, 28), None, None),
        ("Ubuntu", "25.10", date(2026, 11, 28), None, None),
        ("Windows", "", date(2026, 11, 28), None, None),
    ],
)
def test_lifecycle_lookup(
    name: str, version: str, day: date, end: date | None, out: bool | None
) -> None:
    assert lifecycle.support_status(name, version, day) == (end, out)


@pytest.mark.parametrize(
    ("release", "version", "edition", "expected"),
    [
        ("10", "10.0.22631", "Professional", "11 23H2 Pro"),
        ("10", "10.0.26100", "Education", "11 24H2 Education"),
        ("10", "10.0.19045", "Core", "10 22H2 Home"),
        ("10", "10.0.19044", "EnterpriseS", "10 LTSC 2021"),
        ("10", "10.0.17763", "ServerStandard", "Server 2019"),
        ("7", "6.1.7601", "Professional", "7 Pro"),
        # names ending in "n" that are not N editions, and N editions of them
        ("10", "10.0.22631", "ProfessionalEducation", "11 23H2 Pro Education"),
        ("10", "10.0.22631", "EducationN", "11 23H2 Education"),
        ("10", "10.0.19044", "EnterpriseSN", "10 LTSC 2021"),
    ],
)
def test_windows_versions_are_named_as_the_table_names_them(
    release: str, version: str, edition: str, expected: str
) -> None:
    assert lifecycle.windows_os(release, version, edition) == ("Windows", expected)
    assert lifecycle.lookup("Windows", expected) is not None


def test_bad_lifecycle_row_is_named() -> None:
    text = (
        "os,version,edition,end_of_support,note\n"
        "ubuntu,24.04,,2029-05-31,x\n"
        "ubuntu,26.04,,May 2031,x\n"
    )
    with pytest.raises(lifecycle.LifecycleError, match=r"row 3: end_of_support 'May 2031'"):
        lifecycle.parse_table(text)


def test_shipped_table_parses_and_covers_the_required_families() -> None:
    families = {row.os for row in lifecycle.default_table()}
    assert {"windows", "ubuntu", "debian"} <= families
