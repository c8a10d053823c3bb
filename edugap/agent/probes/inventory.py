"""Inventory probe: what this computer is (hardware, OS and its support status, disks, network).

Privacy: no user names, no MAC addresses, no host name, no software list leave the computer.
Interface names that embed a MAC (Linux `enx001122334455`) are shortened, mount points under a
user's directory are dropped, and the hardware hash is a one-way digest.
"""

from __future__ import annotations

import getpass
import hashlib
import platform
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import psutil

from edugap.agent import lifecycle as lifecycle_mod
from edugap.agent.probes import Identity
from edugap.protocol.messages import (
    Battery,
    CpuInfo,
    Disk,
    Inventory,
    NetInterface,
    OsInfo,
    new_report_id,
    utcnow,
)

_SKIP_FSTYPES = {
    "squashfs", "tmpfs", "devtmpfs", "overlay", "ramfs", "iso9660", "udf", "proc", "sysfs",
    "autofs", "fuse.snapfuse", "nsfs", "efivarfs", "cgroup", "cgroup2",
}  # fmt: skip
# removable media and mounts inside a user's home (their path names the user)
_USER_MOUNT_PREFIXES = ("/media/", "/run/media/", "/home/", "/Users/")
MachineKind = Literal["desktop", "laptop", "server", "unknown"]
NetKind = Literal["wired", "wifi", "other"]
_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def _gb(nbytes: int) -> float:
    return round(nbytes / 1e9, 1)


class InventoryProbe:
    """Collects one `Inventory` report with psutil, platform and (on Linux) sysfs."""

    name = "inventory"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        sysfs_root: str | Path = "/sys",
        lifecycle: tuple[lifecycle_mod.Lifecycle, ...]
        | list[lifecycle_mod.Lifecycle]
        | None = None,
        os_release: str | Path = "/etc/os-release",
        platform_name: str = sys.platform,
    ) -> None:
        self._clock = clock
        self.sysfs = Path(sysfs_root)
        self._lifecycle = lifecycle
        self._os_release = Path(os_release)
        self._platform = platform_name

    def collect(self, identity: Identity) -> Inventory:
        now = self._clock()
        os_info = self.os_info(now.date())
        dmi = self.sysfs / "class" / "dmi" / "id"
        chassis_type = read_text(dmi / "chassis_type")
        battery = self.battery()
        cpu = self.cpu()
        memory_mb = psutil.virtual_memory().total // 2**20
        return Inventory(
            report_id=new_report_id(),
            school_id=identity.school_id,
            device_id=identity.device_id,
            measured_at=now,
            agent_version=identity.agent_version,
            os=os_info,
            cpu=cpu,
            memory_mb=memory_mb,
            disks=self.disks(),
            net=self.interfaces(),
            battery=battery,
            boot_time=datetime.fromtimestamp(psutil.boot_time(), UTC),
            machine_kind=machine_kind(chassis_type, battery is not None),
            bios_date=self.bios_date(),
            chassis_type=chassis_name(chassis_type),
            system_disk_free_pct=self.system_disk_free_pct(),
            hardware_hash=self.hardware_hash(cpu.model, memory_mb),
            speed_tester=identity.speed_tester,
        )

    # --- operating system ----------------------------------------------------------------

    def os_info(self, today: date) -> OsInfo:
        if self._platform == "win32":
            name, version = lifecycle_mod.windows_os(
                platform.release(), platform.version(), platform.win32_edition() or ""
            )
        elif self._platform.startswith("linux"):
            fields = _parse_os_release(read_text(self._os_release) or "")
            name = fields.get("NAME") or "Linux"
            version = fields.get("VERSION_ID") or platform.release()
        else:
            name, version = platform.system() or self._platform, platform.release()
        end, out = lifecycle_mod.support_status(name, version, today, self._lifecycle)
        return OsInfo(
            name=name[:256],
            version=version[:256],
            end_of_support=end.isoformat() if end else None,
            out_of_support=out,
        )

    # --- hardware ------------------------------------------------------------------------

    def cpu(self) -> CpuInfo:
        model = ""
        if self._platform.startswith("linux"):
            for line in (read_text(Path("/proc/cpuinfo")) or "").splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    model = value.strip()
                    break
        if not model and self._platform == "win32":
            model = _windows_registry(_CPU_KEY, "ProcessorNameString") or ""
        model = model or platform.processor() or platform.machine() or "unknown"
        threads = psutil.cpu_count(logical=True) or 1
        cores = psutil.cpu_count(logical=False) or threads
        return CpuInfo(model=model[:256], cores=cores, threads=threads)

    def bios_date(self) -> str | None:
        """The firmware date as ISO YYYY-MM-DD where it parses, else as the OS gives it."""
        raw = read_text(self.sysfs / "class" / "dmi" / "id" / "bios_date")
        if raw is None and self._platform == "win32":
            raw = _windows_registry(_BIOS_KEY, "BIOSReleaseDate")
        if not raw:
            return None
        for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%Y%m%d", "%m/%d/%y"):
            try:
                return datetime.strptime(raw, fmt).date().isoformat()
            except ValueError:
                continue
        return raw[:32]

    def battery(self) -> Battery | None:
        if self._platform.startswith("linux"):
            return battery_from_sysfs(self.sysfs / "class" / "power_supply")
        sensed = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
        if sensed is None:
            return None
        return Battery(percent=max(0.0, min(100.0, float(sensed.percent))), health_pct=None)

    def hardware_hash(self, cpu_model: str, memory_mb: int) -> str:
        """SHA-256 over hardware identifiers: duplicate detection only, never the device id."""
        dmi = self.sysfs / "class" / "dmi" / "id"
        parts = [
            read_text(dmi / "product_uuid") or "",
            read_text(dmi / "board_serial") or "",
            cpu_model,
            # rounded so a kernel update that reserves a little more memory keeps the hash
            str(round(memory_mb / 256)),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    # --- storage and network -------------------------------------------------------------

    def disks(self) -> list[Disk]:
        user = _user_name()
        seen: set[str] = set()
        out: list[Disk] = []
        for part in psutil.disk_partitions(all=False):
            opts = set(part.opts.split(","))
            if (
                part.fstype in _SKIP_FSTYPES
                or part.device.startswith("/dev/loop")
                or opts & {"cdrom", "removable"}
                or part.mountpoint.startswith(_USER_MOUNT_PREFIXES)
                or (user and user in part.mountpoint)
                or part.device in seen
            ):
                continue
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            seen.add(part.device)
            out.append(
                Disk(
                    mount=part.mountpoint[:256], total_gb=_gb(usage.total), free_gb=_gb(usage.free)
                )
            )
        return out[:64]

    def system_disk_free_pct(self) -> float | None:
        root = "C:\\" if self._platform == "win32" else "/"
        try:
            usage = psutil.disk_usage(root)
        except OSError:
            return None
        return round(100.0 * usage.free / usage.total, 1) if usage.total else None

    def interfaces(self) -> list[NetInterface]:
        macs = _mac_hexes()
        out: list[NetInterface] = []
        for name, stats in sorted(psutil.net_if_stats().items()):
            out.append(
                NetInterface(
                    name=scrub_interface_name(name, macs)[:256],
                    kind=self.interface_kind(name, "loopback" in (stats.flags or "")),
                    speed_mbps=float(max(0, stats.speed)),
                    up=bool(stats.isup),
                )
            )
        return out[:64]

    def interface_kind(self, name: str, loopback: bool) -> NetKind:
        if loopback or name == "lo" or "loopback" in name.lower():
            return "other"
        if self._platform.startswith("linux"):
            dev = self.sysfs / "class" / "net" / name
            if (dev / "wireless").exists() or (dev / "phy80211").exists():
                return "wifi"
            if (self.sysfs / "devices" / "virtual" / "net" / name).exists():
                return "other"  # bridges, veth, tunnels, docker0
            return "wired"
        lowered = name.lower()
        if any(w in lowered for w in ("wi-fi", "wifi", "wireless", "wlan")):
            return "wifi"
        if any(v in lowered for v in ("vethernet", "virtual", "vpn", "tap", "tun", "bluetooth")):
            return "other"
        return "wired"


def _parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user in the environment (a service account without one)
        return None


def _mac_hexes() -> set[str]:
    macs: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == psutil.AF_LINK and addr.address:
                macs.add(re.sub(r"[^0-9a-f]", "", addr.address.lower()))
    return macs


def scrub_interface_name(name: str, macs: set[str]) -> str:
    """Interface name without an embedded MAC address (systemd's `enx<mac>` names)."""
    lowered = name.lower()
    for mac in macs:
        if mac and len(mac) == 12 and mac in lowered:
            return name[: lowered.index(mac)] + "-mac"
    if _MAC_HEX.search(lowered):
        return _MAC_HEX.sub("-mac", name.lower())
    return name


_BIOS_KEY = r"HARDWARE\DESCRIPTION\System\BIOS"
_CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"


def _windows_registry(key_path: str, name: str) -> str | None:
    """One HKLM value (a cheap read, unlike spawning wmic), or None."""
    if sys.platform != "win32":
        return None
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path) as key:
            value, _ = winreg.QueryValueEx(key, name)
        return str(value).strip() or None
    except OSError:
        return None


# --- sysfs and SMBIOS ----------------------------------------------------------------------

# SMBIOS 3.x chassis types (DMI type 3) by number, and what kind of machine each is.
_CHASSIS = {
    1: "Other", 2: "Unknown", 3: "Desktop", 4: "Low Profile Desktop", 5: "Pizza Box",
    6: "Mini Tower", 7: "Tower", 8: "Portable", 9: "Laptop", 10: "Notebook", 11: "Hand Held",
    12: "Docking Station", 13: "All in One", 14: "Sub Notebook", 15: "Space-saving",
    16: "Lunch Box", 17: "Main Server Chassis", 18: "Expansion Chassis", 19: "SubChassis",
    20: "Bus Expansion Chassis", 21: "Peripheral Chassis", 22: "RAID Chassis",
    23: "Rack Mount Chassis", 24: "Sealed-case PC", 25: "Multi-system Chassis",
    26: "Compact PCI", 27: "Advanced TCA", 28: "Blade", 29: "Blade Enclosure", 30: "Tablet",
    31: "Convertible", 32: "Detachable", 33: "IoT Gateway", 34: "Embedded PC", 35: "Mini PC",
    36: "Stick PC",
}  # fmt: skip
_LAPTOP = {8, 9, 10, 11, 14, 30, 31, 32}
_DESKTOP = {3, 4, 5, 6, 7, 13, 15, 16, 24, 34, 35, 36}
_SERVER = {17, 23, 25, 28, 29}


def read_text(path: Path) -> str | None:
    """A small sysfs/proc file's stripped text, or None when absent or unreadable (not root)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _chassis_number(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def chassis_name(raw: str | None) -> str | None:
    number = _chassis_number(raw)
    if number is None:
        return None
    return _CHASSIS.get(number, f"Type {number}")


def machine_kind(raw_chassis: str | None, has_battery: bool) -> MachineKind:
    number = _chassis_number(raw_chassis)
    if number in _LAPTOP:
        return "laptop"
    if number in _DESKTOP:
        return "desktop"
    if number in _SERVER:
        return "server"
    return "laptop" if has_battery else "unknown"


def _int_file(path: Path) -> int | None:
    text = read_text(path)
    return int(text) if text and text.isdigit() else None


def battery_from_sysfs(power_supply: Path) -> Battery | None:
    """The first system battery under /sys/class/power_supply (BAT*), with its health."""
    try:
        batteries = sorted(p for p in power_supply.iterdir() if p.name.startswith("BAT"))
    except OSError:
        return None
    for bat in batteries:
        if read_text(bat / "type") not in (None, "Battery"):
            continue
        percent = _int_file(bat / "capacity")
        health = None
        for full, design in (
            ("energy_full", "energy_full_design"),
            ("charge_full", "charge_full_design"),
        ):
            now_full, design_full = _int_file(bat / full), _int_file(bat / design)
            if now_full is not None and design_full:
                health = round(min(200.0, 100.0 * now_full / design_full), 1)
                if percent is None:
                    current = _int_file(bat / full.replace("_full", "_now"))
                    if current is not None and now_full:
                        percent = round(100 * current / now_full)
                break
        if percent is None:
            continue
        return Battery(percent=float(max(0, min(100, percent))), health_pct=health)
    return None
