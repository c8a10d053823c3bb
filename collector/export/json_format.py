"""JSON: an array of objects keyed by COLUMNS, streamed (times are RFC 3339 UTC)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import msgspec

from collector.export import COLUMNS, Row


class JsonExporter:
    """One object per school, one per line inside a JSON array."""

    def write(self, rows: Iterable[Row], out: BinaryIO) -> int:
        encode = msgspec.json.Encoder().encode
        out.write(b"[")
        count = 0
        for r in rows:
            out.write(b",\n" if count else b"\n")
            out.write(encode(dict(zip(COLUMNS, r, strict=True))))
            count += 1
        out.write(b"\n]\n")
        return count


EXPORTER = JsonExporter()
