"""Map outlines: the operator's GeoJSON is matched to official names (or refused naming the
feature), and the Natural Earth country outline is decoded right and installed."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from edugap.collector.app import CollectorApp, StartupError
from edugap.collector.config import load_config
from edugap.collector.registry import country_outline as builder
from edugap.collector.registry.outlines import OutlineError, country_outline, load_areas
from tests import realparts


def feature(props: dict[str, Any], kind: str = "Polygon") -> dict[str, Any]:
    ring = [[105.123456, 22.5], [105.9, 22.5], [105.9, 23.1], [105.123456, 23.1],
            [105.12346, 22.5000001], [105.123456, 22.5]]  # fmt: skip
    coords: Any = [ring] if kind == "Polygon" else [[ring]]
    geometry = {"type": kind, "coordinates": coords}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def write(tmp_path: Path, features: list[Any]) -> Path:
    path = tmp_path / "areas.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    return path


def test_names_are_made_official_however_they_are_written(tmp_path: Path) -> None:
    path = write(tmp_path, [
        feature({"province": "Tỉnh Cao Bằng", "ma_tinh": "04"}),
        feature({"name": unicodedata.normalize("NFD", "thành phố hà nội")}, "MultiPolygon"),
        feature({"province": "cao bang", "commune": "xa bao lam"}),
    ])  # fmt: skip
    areas = load_areas(path)["features"]
    assert [f["properties"] for f in areas] == [
        {"province": "Cao Bằng", "commune": None},
        {"province": "Thành phố Hà Nội", "commune": None},
        {"province": "Cao Bằng", "commune": "Xã Bảo Lâm"},
    ]
    ring = areas[0]["geometry"]["coordinates"][0]
    assert ring[0] == [105.1235, 22.5] and len(ring) == 5  # rounded; the repeated point dropped


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([feature({"province": "Hà Giang"})], "feature 0 names province 'Hà Giang'"),
        ([feature({"province": "Cao Bằng", "commune": "Xã Nowhere"})],
         "feature 0 names commune 'Xã Nowhere', which is not one of Cao Bằng's"),
        ([feature({"province": "Cao Bằng"}), feature({"ten": "x"})],
         "feature 1 has no 'province' (or 'name') property"),
        ([{"type": "Feature", "properties": {"province": "Cao Bằng"},
           "geometry": {"type": "Point", "coordinates": [105, 22]}}],
         "feature 0 has no Polygon or MultiPolygon geometry"),
        ([], "has no features"),
    ],
)  # fmt: skip
def test_an_unusable_feature_is_refused_naming_it(
    tmp_path: Path, features: list[Any], message: str
) -> None:
    with pytest.raises(OutlineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_areas(write(tmp_path, features))


def test_serve_refuses_to_start_with_a_bad_outline_file(tmp_path: Path) -> None:
    path = write(tmp_path, [feature({"province": "Atlantis"})])
    config = load_config(None, environ={}, cli={"http_outlines": str(path),
                                                "db_url": str(tmp_path / "x.db"),
                                                "http_listen": "127.0.0.1:0"})  # fmt: skip
    app = CollectorApp(config)
    with pytest.raises(StartupError, match=r"config key 'http.outlines' has value .*Atlantis"):
        app.start()
    app.stop()


def test_topology_is_decoded_into_vietnam_and_its_island_groups() -> None:
    # a 1-unit grid: arcs are delta-encoded, a negative index is an arc walked backwards
    topology = {
        "transform": {"scale": [1, 1], "translate": [100, 5]},
        "arcs": [[[5, 10], [1, 0], [0, 1]], [[6, 11], [-1, 0], [0, -1]],
                 [[11, 11], [1, 0], [0, 1], [-1, 0], [0, -1]],
                 [[14, 5], [1, 0], [0, 1], [-1, 0], [0, -1]],
                 [[40, 40], [1, 0], [0, 1], [-1, 0], [0, -1]]],
        "objects": {"countries": {"geometries": [
            {"type": "Polygon", "arcs": [[0, 1]], "properties": {"name": "Vietnam"}},
            {"type": "MultiPolygon", "arcs": [[[2]], [[4]]], "properties": {"name": "China"}},
            {"type": "MultiPolygon", "arcs": [[[3]]], "properties": {"name": "Spratly Is."}},
        ]}},
    }  # fmt: skip
    doc = builder.outline_from_topology(topology)
    names = [f["properties"]["name"] for f in doc["features"]]
    assert names == ["Việt Nam", "Quần đảo Hoàng Sa", "Quần đảo Trường Sa"]
    vietnam = doc["features"][0]["geometry"]["coordinates"]
    assert vietnam == [[[[105, 15], [106, 15], [106, 16], [105, 16], [105, 15]]]]
    # only China's polygon inside the Paracel box is kept
    assert doc["features"][1]["geometry"]["coordinates"] == [
        [[[111, 16], [112, 16], [112, 17], [111, 17], [111, 16]]]
    ]
    assert "public domain" in doc["source"]


def test_the_country_outline_is_installed() -> None:
    found = country_outline()
    if found is None:
        realparts.missing("country outline", "make install builds it with npm (world-atlas)")
        return
    assert builder.current()
    vietnam = found["features"][0]
    assert vietnam["properties"]["name"] == "Việt Nam"
    lons = [p[0] for poly in vietnam["geometry"]["coordinates"] for p in poly[0]]
    lats = [p[1] for poly in vietnam["geometry"]["coordinates"] for p in poly[0]]
    assert 102 < min(lons) < 103 and 109 < max(lons) < 110
    assert 8 < min(lats) < 9 and 23 < max(lats) < 23.5
    assert sum(len(poly[0]) for poly in vietnam["geometry"]["coordinates"]) > 2000
