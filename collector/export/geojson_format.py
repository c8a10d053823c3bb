"""GeoJSON: a FeatureCollection of Points [lon, lat] with the row as properties, streamed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import msgspec

from collector.export import COLUMN, COLUMNS, Row

_LAT, _LON = COLUMN["lat"], COLUMN["lon"]


class GeoJsonExporter:
    """RFC 7946; a school without coordinates (unregistered) has a null geometry."""

    def write(self, rows: Iterable[Row], out: BinaryIO) -> int:
        encode = msgspec.json.Encoder().encode
        out.write(b'{"type":"FeatureCollection","features":[')
        count = 0
        for r in rows:
            lat, lon = r[_LAT], r[_LON]
            geometry = (
                {"type": "Point", "coordinates": [lon, lat]}
                if lat is not None and lon is not None
                else None
            )
            feature = {
                "type": "Feature",
                "geometry": geometry,
                "properties": dict(zip(COLUMNS, r, strict=True)),
            }
            out.write(b",\n" if count else b"\n")
            out.write(encode(feature))
            count += 1
        out.write(b"\n]}\n")
        return count


EXPORTER = GeoJsonExporter()
