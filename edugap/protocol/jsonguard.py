"""JSON checks msgspec does not make: duplicate keys, and nesting too deep to decode.

msgspec keeps the last of two equal keys in an object, silently; a report whose fields say two
things is refused instead. msgspec (like Python's json) decodes nested values recursively and
raises RecursionError near Python's recursion limit; an unknown field, which receivers ignore,
must not make a report fail for its depth, so containers nested deeper than any known field are
cut to `null` before decoding again.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: Containers opening deeper than this are replaced by `null` when a payload is too deep to
#: decode. The deepest known field (`disks[].total_gb`) sits at depth 3; the rest is slack.
MAX_DEPTH: Final = 32

# a whole JSON string (so brackets inside strings are skipped), or one bracket
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class DuplicateKey(ValueError):
    """An object holds the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({k for k, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)


# Only the keys matter: numbers stay text (no digit limit, no conversion), objects become None.
_KEYS = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=str, parse_float=str)


def duplicate_key(text: str) -> str | None:
    """The first key found twice in one object of the JSON `text`, or None.

    `text` must already be valid JSON (msgspec said so); Python's C scanner builds each
    object's pairs and one set of their keys: a few microseconds for a typical report.
    """
    try:
        _KEYS.decode(text)
    except DuplicateKey as e:
        return e.key
    except RecursionError:
        return duplicate_key(cut_deep(text.encode("utf-8")).decode("utf-8"))
    except ValueError:
        return None  # not JSON to Python's scanner either: decoding has said what is wrong
    return None


def cut_deep(payload: bytes, max_depth: int = MAX_DEPTH) -> bytes:
    """`payload` with every array or object opening deeper than `max_depth` replaced by null.

    Iterative (no recursion, however deep the input). Known fields are never that deep, so
    only unknown fields, which receivers ignore, change. An unclosed container is cut to its
    end, leaving JSON that fails to decode as what it was: malformed.
    """
    out: list[bytes] = []
    depth = 0
    kept = 0  # payload[:kept] is copied (or cut) already
    cut_from = -1
    for m in _TOKEN.finditer(payload):
        c = payload[m.start()]
        if c in _OPEN:
            depth += 1
            if depth == max_depth + 1:
                cut_from = m.start()
        elif c in _CLOSE:
            if depth == max_depth + 1 and cut_from >= 0:
                out += (payload[kept:cut_from], b"null")
                kept = m.end()
                cut_from = -1
            depth -= 1
    if cut_from >= 0:
        out += (payload[kept:cut_from], b"null")
        return b"".join(out)
    out.append(payload[kept:])
    return b"".join(out)
