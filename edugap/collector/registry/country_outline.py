"""Vietnam's outline for the coverage map, built from Natural Earth at install time.

`python -m edugap.collector.registry.country_outline` (run by `make install`) asks npm for the
`world-atlas` package (Natural Earth's admin-0 countries at 1:10m as TopoJSON; the data is in
the public domain, the package ISC-licensed), takes Vietnam and the island groups Hoàng Sa
(Paracel) and Trường Sa (Spratly) out of it, and writes them as GeoJSON next to this module,
where the collector and `edugap map` read it with no internet. Nothing of it is committed.

Natural Earth's default view puts the Paracel islands in China's polygon and the Spratly
islands in a feature of their own; Vietnam's maps show both groups as Vietnamese, so both are
kept here as features of their own, named in Vietnamese.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE = "world-atlas@2.0.2"
TOPOLOGY = "package/countries-10m.json"
SOURCE = f"Natural Earth 4.1.0, admin 0 countries 1:10m (public domain), via npm {PACKAGE}"
OUTLINE = Path(__file__).with_name("natural_earth_vietnam.json")
PARACEL_BOX = (110.5, 15.0, 113.0, 18.0)  # lon min, lat min, lon max, lat max
DIGITS = 4  # ~11 m, finer than the 1:10m source


class OutlineBuildError(RuntimeError):
    """The outline could not be built; the message says which step failed."""


def _decode_arcs(topology: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """The topology's arcs in degrees (they are quantized and delta-encoded)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((round(x * sx + tx, DIGITS), round(y * sy + ty, DIGITS)))
        arcs.append(points)
    return arcs


def _polygons(geometry: dict[str, Any], arcs: list[list[tuple[float, float]]]) -> list[Any]:
    """The geometry's polygons as GeoJSON coordinates (a ring joins its arcs end to start)."""

    def ring(indexes: list[int]) -> list[list[float]]:
        out: list[tuple[float, float]] = []
        for i in indexes:
            points = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(points if not out else points[1:])
        return [list(p) for p in out]

    polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
    return [[ring(r) for r in polygon] for polygon in polygons]


def _inside(polygon: list[Any], box: tuple[float, float, float, float]) -> bool:
    return all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in polygon[0])


def outline_from_topology(topology: dict[str, Any]) -> dict[str, Any]:
    """The GeoJSON FeatureCollection of Vietnam, Hoàng Sa and Trường Sa."""
    arcs = _decode_arcs(topology)
    by_name = {g["properties"]["name"]: g for g in topology["objects"]["countries"]["geometries"]}
    try:
        vietnam, china, spratly = by_name["Vietnam"], by_name["China"], by_name["Spratly Is."]
    except KeyError as e:
        raise OutlineBuildError(f"{PACKAGE} has no country named {e}") from None
    paracel = [p for p in _polygons(china, arcs) if _inside(p, PARACEL_BOX)]
    parts = (
        ("Việt Nam", _polygons(vietnam, arcs)),
        ("Quần đảo Hoàng Sa", paracel),
        ("Quần đảo Trường Sa", _polygons(spratly, arcs)),
    )
    return {
        "type": "FeatureCollection",
        "source": SOURCE,
        "features": [
            {"type": "Feature", "properties": {"name": name},
             "geometry": {"type": "MultiPolygon", "coordinates": polygons}}
            for name, polygons in parts
        ],
    }  # fmt: skip


def build(out: Path = OUTLINE, npm: str = "npm") -> Path:
    """Fetch the package with npm and write the outline to `out`."""
    exe = shutil.which(npm)
    if exe is None:
        raise OutlineBuildError(f"{npm} is not installed (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [exe, "pack", PACKAGE, "--silent", "--pack-destination", tmp],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise OutlineBuildError(f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            member = tar.extractfile(TOPOLOGY)
            if member is None:
                raise OutlineBuildError(f"{PACKAGE} has no {TOPOLOGY}")
            topology = json.load(member)
    text = json.dumps(outline_from_topology(topology), ensure_ascii=False, separators=(",", ":"))
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(out)
    return out


def current(out: Path = OUTLINE) -> bool:
    """True when `out` holds an outline built from PACKAGE."""
    try:
        return bool(json.loads(out.read_text(encoding="utf-8")).get("source") == SOURCE)
    except (OSError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTLINE, help="where to write the GeoJSON")
    parser.add_argument("--force", action="store_true", help="build even if it is current")
    parser.add_argument("--optional", action="store_true",
                        help="on failure, warn and exit 0 (the map then has no country outline)")
    args = parser.parse_args(argv)  # fmt: skip
    if current(args.out) and not args.force:
        print(f"country outline: {args.out} is current ({SOURCE})")
        return 0
    try:
        path = build(args.out)
    except (OutlineBuildError, OSError, subprocess.TimeoutExpired, ValueError) as e:
        print(f"country outline: cannot build {args.out}: {e}", file=sys.stderr)
        return 0 if args.optional else 1
    print(f"country outline: wrote {path} from {SOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
