"""JSON: an array of objects keyed by COLUMNS, streamed (times are RFC 3339 UTC, `shortfalls`
an array of kinds: the same objects as the API's schools)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import msgspec

from edugap.collector.export import COLUMNS, ExportOptions, Row


def write_array(items: Iterable[object], out: BinaryIO, head: bytes, tail: bytes) -> int:
    """`head`, the items as JSON one per line, comma-separated, then `tail`; returns the count."""
    encode = msgspec.json.Encoder().encode
    out.write(head)
    count = 0
    for item in items:
        out.write(b",\n" if count else b"\n")
        out.write(encode(item))
        count += 1
    out.write(tail)
    return count


class JsonExporter:
    """One object per school, one per line inside a JSON array."""

    def write(self, rows: Iterable[Row], out: BinaryIO, options: ExportOptions) -> int:
        objects = (dict(zip(COLUMNS, r, strict=True)) for r in rows)
        return write_array(objects, out, b"[", b"\n]\n")


EXPORTER = JsonExporter()
