"""Outlines for maps: the country (Natural Earth, built at install) and the operator's areas.

The operator's file (`http.outlines`, `edugap map --outlines`) is GeoJSON: a FeatureCollection
of Polygon or MultiPolygon features, each with a `province` property (or `name` when the file
holds provinces only) and, for commune outlines, a `commune` property. Names are matched the
way the API matches them (edugap.collector.registry.places), so "Tỉnh Cao Bằng", "cao bang"
and "Cao Bằng" are one province; a name that matches no official place is an error naming the
feature, so a map never silently lacks an area. Coordinates are rounded to 4 decimals (~11 m)
and other properties dropped: that is all a coverage map needs, and it keeps the file small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edugap.collector.registry.country_outline import OUTLINE
from edugap.collector.registry.places import Places, default_places

DIGITS = 4
MAX_NAMED = 10  # unmatched names listed in an error


class OutlineError(ValueError):
    """The outline file cannot be used; the message names the file and what is wrong."""


def _empty() -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": []}


@dataclass(frozen=True, slots=True)
class Outlines:
    """The GeoJSON a map draws: the country (None when it was not built) and the areas."""

    country: dict[str, Any] | None = None
    areas: dict[str, Any] = field(default_factory=_empty)


@cache
def country_outline(path: Path = OUTLINE) -> dict[str, Any] | None:
    """Vietnam from Natural Earth (see country_outline.py), or None when it was not built."""
    try:
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found


def _rounded(coords: Any) -> Any:
    """Coordinates rounded to DIGITS, with points that became equal to the previous dropped."""
    if coords and isinstance(coords[0], int | float):
        return [round(float(c), DIGITS) for c in coords[:2]]
    out = [_rounded(c) for c in coords]
    if out and isinstance(out[0], list) and out[0] and isinstance(out[0][0], float):
        out = [p for i, p in enumerate(out) if i == 0 or p != out[i - 1]]
    return out


def _name(props: dict[str, Any], key: str) -> str | None:
    value = props.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _area(feature: Any, places: Places) -> tuple[dict[str, Any] | None, str | None]:
    """The normalised feature, or None and why it cannot be used."""
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        return None, "is not a GeoJSON feature with properties"
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        return None, "has no Polygon or MultiPolygon geometry"
    props = feature["properties"]
    given = _name(props, "province") or _name(props, "name")
    if given is None:
        return None, "has no 'province' (or 'name') property"
    province = places.province(given)
    if province is None:
        return None, f"names province {given!r}, which is not one of the 34"
    commune_given = _name(props, "commune")
    commune = province.commune(commune_given) if commune_given else None
    if commune_given and commune is None:
        return None, f"names commune {commune_given!r}, which is not one of {province.name}'s"
    return {
        "type": "Feature",
        "properties": {"province": province.name,
                       "commune": commune.name if commune else None},
        "geometry": {"type": geometry["type"],
                     "coordinates": _rounded(geometry.get("coordinates") or [])},
    }, None  # fmt: skip


def load_areas(path: str | Path, places: Places | None = None) -> dict[str, Any]:
    """The operator's province or commune outlines, names made official; OutlineError if any
    feature cannot be used."""
    places = places or default_places()
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise OutlineError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise OutlineError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise OutlineError(f"{path} is not a GeoJSON FeatureCollection")
    features, problems = [], []
    for i, feature in enumerate(doc.get("features") or []):
        area, why = _area(feature, places)
        if area is None:
            problems.append(f"feature {i} {why}")
        else:
            features.append(area)
    if problems:
        more = f" (and {len(problems) - MAX_NAMED} more)" if len(problems) > MAX_NAMED else ""
        raise OutlineError(f"{path}: " + "; ".join(problems[:MAX_NAMED]) + more)
    if not features:
        raise OutlineError(f"{path} has no features")
    return {"type": "FeatureCollection", "features": features}


def load_outlines(areas_path: str | Path | None) -> Outlines:
    """The country outline and, when a file is given, the operator's areas."""
    areas = load_areas(areas_path) if areas_path else _empty()
    return Outlines(country=country_outline(), areas=areas)
