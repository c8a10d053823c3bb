"""A synthetic but realistic fleet of Vietnamese schools: registry rows and per-school scenarios.

Places come from the `vietnam-provinces` package (2025 two-tier structure: 34 provinces and
their wards/communes). Coordinates come from a per-province centroid table below, spread per
commune, so maps look plausible without shipping boundary data. Everything is drawn from
`random.Random` seeded per school, so one seed always gives the same fleet.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, TextIO

from edugap.collector.model import School
from edugap.collector.policy.rules import Policy, load_policy
from edugap.collector.registry import schools as registry

SimConnectivity = Literal["good", "moderate", "bad"]
SimMonitoring = Literal["live", "drop_off", "never"]
Equipment = Literal["ok", "few", "old"]

# Shares of the fleet in each scenario. They add up to 1 within each group.
CONNECTIVITY_MIX: tuple[tuple[SimConnectivity, float], ...] = (
    ("good", 0.5),
    ("moderate", 0.3),
    ("bad", 0.2),
)
MONITORING_MIX: tuple[tuple[SimMonitoring, float], ...] = (
    ("live", 0.86),
    ("drop_off", 0.07),  # last report 22 to 40 days ago
    ("never", 0.07),
)
EQUIPMENT_MIX: tuple[tuple[Equipment, float], ...] = (("ok", 0.72), ("few", 0.16), ("old", 0.12))
LEVEL_MIX: tuple[tuple[str, float], ...] = (
    ("primary", 0.5),
    ("lower_secondary", 0.35),
    ("upper_secondary", 0.15),
)
LEVEL_NAMES = {
    "primary": "Trường Tiểu học",
    "lower_secondary": "Trường THCS",
    "upper_secondary": "Trường THPT",
}
# Median students per school by level (lognormal around it); urban wards are larger.
LEVEL_STUDENTS = {"primary": 550, "lower_secondary": 650, "upper_secondary": 1050}
CONTRACT_TIERS_MBPS = (20, 30, 50, 100, 150, 200, 300)

# Vietnam's bounding box; every generated coordinate is clamped inside it.
LAT_RANGE = (8.6, 23.3)
LON_RANGE = (102.2, 109.4)

# province code -> (approximate centroid lat, lon, spread in degrees, population in millions)
# for the 34 provinces after the 2025 merger. Population weights how many schools a province
# gets; the spread is a rough half-size of the province.
PROVINCE_GEO: dict[int, tuple[float, float, float, float]] = {
    1: (21.03, 105.80, 0.22, 8.7),  # Hà Nội
    4: (22.70, 106.10, 0.30, 0.57),  # Cao Bằng
    8: (22.30, 105.10, 0.45, 1.86),  # Tuyên Quang (+ Hà Giang)
    11: (21.70, 103.00, 0.35, 0.65),  # Điện Biên
    12: (22.30, 103.20, 0.30, 0.49),  # Lai Châu
    14: (21.20, 104.00, 0.40, 1.3),  # Sơn La
    15: (22.00, 104.30, 0.40, 1.78),  # Lào Cai (+ Yên Bái)
    19: (21.85, 105.85, 0.30, 1.8),  # Thái Nguyên (+ Bắc Kạn)
    20: (21.85, 106.60, 0.30, 0.8),  # Lạng Sơn
    22: (21.10, 107.30, 0.30, 1.4),  # Quảng Ninh
    24: (21.25, 106.25, 0.20, 3.6),  # Bắc Ninh (+ Bắc Giang)
    25: (21.10, 105.30, 0.30, 4.0),  # Phú Thọ (+ Vĩnh Phúc, Hòa Bình)
    31: (20.85, 106.50, 0.20, 4.7),  # Hải Phòng (+ Hải Dương)
    33: (20.65, 106.20, 0.18, 3.6),  # Hưng Yên (+ Thái Bình)
    37: (20.30, 106.00, 0.20, 4.4),  # Ninh Bình (+ Hà Nam, Nam Định)
    38: (19.95, 105.45, 0.35, 4.3),  # Thanh Hóa
    40: (19.10, 104.90, 0.45, 3.5),  # Nghệ An
    42: (18.30, 105.70, 0.25, 1.6),  # Hà Tĩnh
    44: (17.20, 106.50, 0.35, 1.9),  # Quảng Trị (+ Quảng Bình)
    46: (16.40, 107.55, 0.20, 1.4),  # Huế
    48: (15.70, 108.00, 0.30, 3.1),  # Đà Nẵng (+ Quảng Nam)
    51: (14.80, 108.30, 0.40, 2.2),  # Quảng Ngãi (+ Kon Tum)
    52: (14.00, 108.40, 0.40, 3.6),  # Gia Lai (+ Bình Định)
    56: (12.10, 109.00, 0.30, 2.2),  # Khánh Hòa (+ Ninh Thuận)
    66: (12.90, 108.40, 0.35, 3.3),  # Đắk Lắk (+ Phú Yên)
    68: (11.60, 107.90, 0.45, 3.9),  # Lâm Đồng (+ Đắk Nông, Bình Thuận)
    75: (11.30, 107.00, 0.30, 4.5),  # Đồng Nai (+ Bình Phước)
    79: (10.85, 106.75, 0.25, 14.0),  # Hồ Chí Minh (+ Bình Dương, Bà Rịa - Vũng Tàu)
    80: (10.95, 106.20, 0.25, 3.3),  # Tây Ninh (+ Long An)
    82: (10.45, 105.90, 0.25, 4.4),  # Đồng Tháp (+ Tiền Giang)
    86: (10.00, 106.20, 0.25, 4.3),  # Vĩnh Long (+ Bến Tre, Trà Vinh)
    91: (10.20, 105.00, 0.30, 4.9),  # An Giang (+ Kiên Giang)
    92: (9.80, 105.80, 0.25, 4.2),  # Cần Thơ (+ Sóc Trăng, Hậu Giang)
    96: (9.20, 105.30, 0.25, 2.6),  # Cà Mau (+ Bạc Liêu)
}

REGISTRY_COLUMNS = (
    "school_id",
    "name",
    "province",
    "commune",
    "level",
    "lat",
    "lon",
    "students",
    "computers_required",
    "contracted_mbps",
)


@dataclass(frozen=True, slots=True)
class Place:
    """One commune (xã, phường, đặc khu) with its province and a representative point."""

    province_code: int
    province: str
    commune: str
    lat: float
    lon: float
    urban: bool


@dataclass(frozen=True, slots=True)
class Profile:
    """How a simulated school behaves: what its reports will show."""

    connectivity: SimConnectivity
    monitoring: SimMonitoring
    equipment: Equipment
    download_mbps: float  # the school's typical (median) download
    upload_ratio: float  # upload as a share of download
    latency_ms: float
    downtime: float  # share of availability checks that fail
    last_report_days: float  # days before `now` of its newest report (0 for live schools)


@dataclass(frozen=True, slots=True)
class SimSchool:
    """A registry row, its scenario and the device ids of its agents."""

    school: School
    profile: Profile
    device_ids: tuple[str, ...]


def _pick(rng: random.Random, mix: Sequence[tuple[str, float]]) -> str:
    """One name from (name, share) pairs."""
    x = rng.random()
    for name, share in mix:
        x -= share
        if x < 0:
            return name
    return mix[-1][0]


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def _short_commune(name: str) -> str:
    """'Phường Hoàn Kiếm' -> 'Hoàn Kiếm', for school names."""
    for prefix in ("Phường ", "Xã ", "Đặc khu "):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def load_places() -> list[Place]:
    """Every commune of the 34 provinces, with a deterministic point inside its province."""
    from vietnam_provinces import Province, Ward

    provinces = {int(p.code): p for p in Province.iter_all()}
    places: list[Place] = []
    for ward in Ward.iter_all():
        code = int(ward.province_code)
        lat0, lon0, spread, _ = PROVINCE_GEO[code]
        # Seeded by the ward code alone, so a commune sits at the same point in every fleet.
        rng = random.Random(int(ward.code))
        lat = _clamp(lat0 + rng.gauss(0, spread / 2), LAT_RANGE)
        lon = _clamp(lon0 + rng.gauss(0, spread / 2), LON_RANGE)
        places.append(
            Place(
                province_code=code,
                province=provinces[code].name,
                commune=ward.name,
                lat=lat,
                lon=lon,
                urban=ward.name.startswith("Phường"),
            )
        )
    places.sort(key=lambda p: (p.province_code, p.commune))
    return places


@cache
def _default_policy() -> Policy:
    return load_policy()


def required_mbps(students: int) -> float:
    """The default policy's requirement, which the connectivity scenarios are drawn around."""
    return _default_policy().required_mbps(students)


def _profile(rng: random.Random, students: int) -> Profile:
    connectivity = _pick(rng, CONNECTIVITY_MIX)
    required = required_mbps(students)
    if connectivity == "good":
        download = required * rng.uniform(1.3, 4.0)
        latency = rng.uniform(8, 40)
    elif connectivity == "moderate":
        # log-uniform between 1.5 Mbps and three quarters of the requirement
        download = math.exp(rng.uniform(math.log(1.5), math.log(0.75 * required)))
        latency = rng.uniform(30, 150)
    else:
        download = rng.uniform(0.15, 0.8)
        latency = rng.uniform(80, 600)
    monitoring = _pick(rng, MONITORING_MIX)
    downtime = 0.0 if rng.random() < 0.8 else rng.uniform(0.01, 0.2)
    return Profile(
        connectivity=connectivity,  # type: ignore[arg-type]
        monitoring=monitoring,  # type: ignore[arg-type]
        equipment=_pick(rng, EQUIPMENT_MIX),  # type: ignore[arg-type]
        download_mbps=round(download, 2),
        upload_ratio=rng.uniform(0.3, 1.0),
        latency_ms=round(latency, 1),
        downtime=downtime,
        last_report_days=rng.uniform(22, 40) if monitoring == "drop_off" else 0.0,
    )


def _school_rng(seed: int, index: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and machines.
    return random.Random(f"edugap-fleet:{seed}:{index}")


def build_fleet(
    schools: int, devices_per_school: int, seed: int = 1, places: Sequence[Place] | None = None
) -> list[SimSchool]:
    """`schools` simulated schools spread over the provinces by population, `seed` repeatable."""
    if schools < 0:
        raise ValueError(f"schools must be >= 0, got {schools}")
    if devices_per_school < 1:
        raise ValueError(f"devices per school must be >= 1, got {devices_per_school}")
    places = list(places) if places is not None else load_places()
    by_province: dict[int, list[Place]] = {}
    for place in places:
        by_province.setdefault(place.province_code, []).append(place)
    codes = sorted(by_province)
    weights = [PROVINCE_GEO[c][3] for c in codes]
    pick_rng = random.Random(f"edugap-provinces:{seed}")
    counters: dict[int, int] = {}
    names: set[tuple[str, str]] = set()
    fleet: list[SimSchool] = []
    for index in range(schools):
        code = pick_rng.choices(codes, weights)[0]
        rng = _school_rng(seed, index)
        place = rng.choice(by_province[code])
        counters[code] = counters.get(code, 0) + 1
        school_id = f"VN{code:02d}-{counters[code]:05d}"
        level = _pick(rng, LEVEL_MIX)
        base = LEVEL_NAMES[level] + " " + _short_commune(place.commune)
        name, n = base, 1
        while (place.commune, name) in names:
            n += 1
            name = f"{base} số {n}"
        names.add((place.commune, name))
        scale = 1.4 if place.urban else 0.75
        students = int(
            _clamp(LEVEL_STUDENTS[level] * scale * rng.lognormvariate(0, 0.45), (40, 3000))
        )
        profile = _profile(rng, students)
        if profile.equipment == "few":
            # Half give a number, half leave it to the policy's students-per-computer ratio.
            computers: int | None = (
                devices_per_school + rng.randint(5, 30) if rng.random() < 0.5 else None
            )
        else:
            # The simulated agents are the school's computers; the registry asks for no more.
            computers = devices_per_school
        contracted: float | None = None
        if rng.random() < 0.6:
            need = required_mbps(students)
            contracted = float(next((t for t in CONTRACT_TIERS_MBPS if t >= need), 300))
        school = School(
            school_id=school_id,
            name=name,
            province=place.province,
            commune=place.commune,
            level=level,
            lat=round(_clamp(place.lat + rng.gauss(0, 0.03), LAT_RANGE), 5),
            lon=round(_clamp(place.lon + rng.gauss(0, 0.03), LON_RANGE), 5),
            students=students,
            computers_required=computers,
            contracted_mbps=contracted,
        )
        devices = tuple(f"sim-{rng.getrandbits(48):012x}" for _ in range(devices_per_school))
        fleet.append(SimSchool(school=school, profile=profile, device_ids=devices))
    return fleet


def write_registry(out: TextIO, schools: Iterable[School]) -> int:
    """Write the registry CSV (header + one row per school); returns the number of rows."""
    return registry.write_csv(out, schools)


def write_registry_file(path: Path, schools: Iterable[School]) -> int:
    """Write the registry CSV to `path` (UTF-8), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        return write_registry(f, schools)
