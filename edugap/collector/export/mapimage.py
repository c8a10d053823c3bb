"""The coverage map as an image for reports and slides: `edugap map -o FILE.svg|png|pdf`.

The SVG is written here by hand (outline, schools coloured by class, legend with counts and
shares, title, date, source); PNG and PDF are that SVG converted by CairoSVG, which needs the
cairo library (Debian `libcairo2`) and is imported only for them. The projection and colours
are the coverage page's (serving/static/map.js), so the image looks like the page.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from edugap.collector.model import CONNECTIVITY_CLASSES, SchoolStatus

COLOURS = {"good": "#1a9850", "moderate": "#f4a300", "bad": "#d73027", "unknown": "#8c8c8c"}
DRAW_ORDER = ("good", "moderate", "unknown", "bad")  # the worst on top
VIETNAM = (102.1, 7.4, 115.5, 23.4)  # lon min, lat min, lon max, lat max, as on the page
FORMATS = ("svg", "png", "pdf")
WIDTH, HEIGHT, MAP_W, MAP_H, PAD = 1000, 1120, 640, 980, 24

WORDS = {
    "vi": {"title": "Kết nối Internet của các trường", "country": "Cả nước",
           "date": "Số liệu lúc {time}", "schools": "{n} trường, {m} trên bản đồ",
           "reporting": "chấm đặc: đang báo cáo|chấm rỗng: không báo cáo",
           "source": "Đường biên: Natural Earth (phạm vi công cộng). Số liệu: edugap.",
           "good": "Tốt", "moderate": "Trung bình", "bad": "Kém", "unknown": "Chưa rõ"},
    "en": {"title": "Internet connectivity of schools", "country": "Whole country",
           "date": "Figures of {time}", "schools": "{n} schools, {m} on the map",
           "reporting": "filled: reporting|ring: not reporting",
           "source": "Boundaries: Natural Earth (public domain). Data: edugap.",
           "good": "Good (meets the requirement)", "moderate": "Moderate (1 Mbps to required)",
           "bad": "Bad (under 1 Mbps)", "unknown": "Unknown (no test in the window)"},
}  # fmt: skip


class MapImageError(ValueError):
    """The image cannot be written: an unknown format, or no cairo for PNG/PDF."""


@dataclass(frozen=True, slots=True)
class MapSpec:
    """What the image shows besides the schools."""

    place: str  # e.g. "Cao Bằng", or "" for the whole country
    generated_at: datetime  # in the time zone to show
    lang: str = "vi"
    title: str | None = None
    notes: str = ""  # the filters, in words


class _Projection:
    """Equirectangular with longitude shrunk by cos(latitude), fitted into the map box."""

    def __init__(self, box: tuple[float, float, float, float]) -> None:
        lon0, lat0, lon1, lat1 = box
        self.k = math.cos(math.radians((lat0 + lat1) / 2))
        span_lon, span_lat = max(lon1 - lon0, 0.05) * self.k, max(lat1 - lat0, 0.05)
        self.scale = 0.94 * min(MAP_W / span_lon, MAP_H / span_lat)
        self.lon, self.lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2

    def __call__(self, lat: float, lon: float) -> tuple[float, float]:
        x = PAD + MAP_W / 2 + (lon - self.lon) * self.k * self.scale
        y = 110 + MAP_H / 2 - (lat - self.lat) * self.scale
        return round(x, 1), round(y, 1)


def _box(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    margin = 0.1
    return min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    polygons = (
        [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    )
    return [ring for polygon in polygons for ring in polygon]


def _path(features: Sequence[dict[str, Any]], project: _Projection) -> str:
    parts = []
    for f in features:
        for ring in _rings(f["geometry"]):
            xy = [project(lat, lon) for lon, lat, *_ in ring]
            parts.append("M" + "L".join(f"{x},{y}" for x, y in xy) + "Z")
    return "".join(parts)


def render_svg(
    schools: Sequence[SchoolStatus],
    spec: MapSpec,
    country: dict[str, Any] | None,
    areas: dict[str, Any] | None = None,
) -> str:
    """The map of `schools` as an SVG document."""
    w = WORDS.get(spec.lang, WORDS["vi"])
    placed = [s for s in schools if s.lat is not None and s.lon is not None]
    area_features = [
        f
        for f in (areas or {}).get("features", [])
        if not spec.place or f["properties"].get("province") == spec.place
    ]
    if spec.place and area_features:
        coords = [
            (lat, lon) for f in area_features for r in _rings(f["geometry"]) for lon, lat, *_ in r
        ]
        box = _box(coords)
    elif spec.place and placed:
        box = _box([(s.lat or 0.0, s.lon or 0.0) for s in placed])
    else:
        box = VIETNAM
    project = _Projection(box)
    radius = 2.2 if len(placed) > 5000 else 3.5 if len(placed) > 500 else 5.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<clipPath id="m"><rect x="{PAD}" y="110" width="{MAP_W}" height="{MAP_H}"/>'
           "</clipPath>",
           f'<rect x="{PAD}" y="110" width="{MAP_W}" height="{MAP_H}" fill="#dcebf5" '
           'stroke="#b9c6cf"/>', '<g clip-path="url(#m)">']  # fmt: skip
    if country:
        out.append(f'<path d="{_path(country["features"], project)}" fill="#f7f5ef" '
                   'stroke="#6d7f8c" stroke-width="0.8" fill-rule="evenodd"/>')  # fmt: skip
        for f in country["features"][1:]:  # the island groups, named under them
            ring = [p for r in _rings(f["geometry"]) for p in r]
            x, y = project(min(p[1] for p in ring), sum(p[0] for p in ring) / len(ring))
            x = min(max(x, PAD + 80), PAD + MAP_W - 80)
            out.append(f'<text x="{x}" y="{y + 16}" font-size="12" font-style="italic" '
                       f'fill="#4a5a66" text-anchor="middle">'
                       f'{escape(f["properties"]["name"])}</text>')  # fmt: skip
    if area_features:
        out.append(f'<path d="{_path(area_features, project)}" fill="none" stroke="#9aa7b0" '
                   'stroke-width="0.5"/>')  # fmt: skip
    for klass in DRAW_ORDER:
        colour = COLOURS[klass]
        dots = [(project(s.lat or 0.0, s.lon or 0.0), s.monitoring == "live")
                for s in placed if s.connectivity == klass]  # fmt: skip
        filled = "".join(
            f'<circle cx="{x}" cy="{y}" r="{radius}"/>' for (x, y), live in dots if live
        )
        rings = "".join(
            f'<circle cx="{x}" cy="{y}" r="{radius}"/>' for (x, y), live in dots if not live
        )
        out.append(f'<g class="{klass}" fill="{colour}">{filled}</g>')
        out.append(f'<g class="{klass}-not-reporting" fill="#ffffff" stroke="{colour}" '
                   f'stroke-width="{radius / 2.5:.2f}">{rings}</g>')  # fmt: skip
    out.append("</g>")
    out += _text_parts(schools, placed, spec, w)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _text_parts(
    schools: Sequence[SchoolStatus], placed: Sequence[SchoolStatus], spec: MapSpec,
    w: dict[str, str],
) -> list[str]:  # fmt: skip
    """Title, date, legend with counts and shares, and the source line."""
    title = spec.title or f"{w['title']}: {spec.place or w['country']}"
    time = spec.generated_at.strftime("%d/%m/%Y %H:%M")
    counts = Counter(s.connectivity for s in schools)
    total = len(schools)
    out = [f'<text x="{PAD}" y="44" font-size="26" font-weight="bold">{escape(title)}</text>',
           f'<text x="{PAD}" y="74" font-size="15" fill="#444">'
           f'{escape(w["date"].format(time=time))} · '
           f'{escape(w["schools"].format(n=total, m=len(placed)))}</text>']  # fmt: skip
    if spec.notes:
        out.append(f'<text x="{PAD}" y="96" font-size="13" fill="#555">{escape(spec.notes)}</text>')
    x, y = PAD + MAP_W + 28, 140
    out.append('<g class="legend" font-size="15">')
    for klass in CONNECTIVITY_CLASSES:
        n = counts.get(klass, 0)
        share = f"{100 * n / total:.1f} %" if total else "–"
        out.append(f'<rect class="swatch-{klass}" x="{x}" y="{y - 16}" width="22" height="22" '
                   f'fill="{COLOURS[klass]}"/>'
                   f'<text x="{x + 32}" y="{y}">{escape(w[klass])}</text>'
                   f'<text x="{x + 32}" y="{y + 20}" fill="#444">{n} ({share})</text>')  # fmt: skip
        y += 58
    for i, line in enumerate(w["reporting"].split("|")):
        out.append(f'<text x="{x}" y="{y + 4 + 18 * i}" font-size="13" fill="#555">'
                   f"{escape(line)}</text>")  # fmt: skip
    out.append("</g>")
    out.append(f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="12" fill="#666">'
               f'{escape(w["source"])}</text>')  # fmt: skip
    return out


def write_image(svg: str, path: Path) -> str:
    """Write `svg` to `path` as its suffix says (svg, png, pdf); returns the format."""
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise MapImageError(f"cannot write {path.name!r}: the file name must end in "
                            f".{', .'.join(FORMATS)}")  # fmt: skip
    partial = path.with_name(path.name + ".partial")
    try:
        if fmt == "svg":
            partial.write_text(svg, encoding="utf-8")
        else:
            try:
                import cairosvg
            except (ImportError, OSError) as e:  # OSError: the cairo library is missing
                raise MapImageError(
                    f"cannot write {fmt.upper()}: CairoSVG and the cairo library are needed "
                    f"(pip install cairosvg; Debian: apt-get install libcairo2), or write .svg: {e}"
                ) from None
            convert = cairosvg.svg2png if fmt == "png" else cairosvg.svg2pdf
            convert(bytestring=svg.encode("utf-8"), write_to=str(partial))
        partial.replace(path)  # a reader never sees half a file
    finally:
        partial.unlink(missing_ok=True)
    return fmt
