"""GeoJSON: a FeatureCollection of Points [lon, lat] with the row as properties, streamed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from edugap.collector.export import COLUMN, COLUMNS, ExportOptions, Row
from edugap.collector.export.json_format import write_array

_LAT, _LON = COLUMN["lat"], COLUMN["lon"]


def _feature(r: Row) -> dict[str, object]:
    lat, lon = r[_LAT], r[_LON]
    geometry = (
        {"type": "Point", "coordinates": [lon, lat]}
        if lat is not None and lon is not None
        else None
    )
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": dict(zip(COLUMNS, r, strict=True)),
    }


class GeoJsonExporter:
    """RFC 7946; a school without coordinates (unregistered) has a null geometry."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int:
        head = b'{"type":"FeatureCollection","features":['
        return write_array(map(_feature, rows), out, head, b"\n]}\n")


EXPORTER = GeoJsonExporter()
