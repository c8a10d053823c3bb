"""Passwords out of text: every form a URL or a connection string can carry one.

`redact(text)` is what every log line, error message and command output passes a URL or DSN
through, in the agent and the collector. It hides:

- the password of a URL's user information, `scheme://user:PASSWORD@host` (percent-encoded or
  not, even when it holds `@`, `/` or `?` that should have been encoded);
- the value of a password-like key, `?password=...`, libpq's `password=...` or
  `password = 'quoted value'`, also when the key itself is percent-encoded (`pass%77ord=`);
- any secret `remember()` was given, wherever it appears (libpq quotes part of a bad DSN in its
  errors: `unexpected spaces found in "pass word"` names no key at all).

It errs on the side of hiding: a password-like value runs to the next white space, so a query
parameter after it is hidden too.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote

MASK = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(\S+)")
# a key at a boundary (start, white space, ?, &, ;, a quote...), then '=' with optional spaces
_KEY = re.compile(r"(?<![\w%.\-])([\w%.\-]+)[ \t]*=[ \t]*")
_SPACE = re.compile(r"\s")
_SENSITIVE_PARTS = ("password", "passwd", "secret", "token", "apikey")
_SENSITIVE_KEYS = frozenset({"pass", "pwd", "pw"})
#: Remembered secrets shorter than this are not masked in free text: they would garble words
#: (a password "edugap" would hide the program's name everywhere).
MIN_REMEMBERED = 8

_remembered: set[str] = set()
_lock = threading.Lock()


def _sensitive(key: str) -> bool:
    name = re.sub(r"[\W_]", "", unquote(key).casefold())
    return name in _SENSITIVE_KEYS or any(part in name for part in _SENSITIVE_PARTS)


def _value_end(text: str, start: int) -> int:
    """Where a key's value that starts at `start` ends: a quoted string or up to white space."""
    if start < len(text) and text[start] in "'\"":
        quote, i = text[start], start + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                return i + 1
            i += 1
        return len(text)
    match = _SPACE.search(text, start)
    return match.start() if match else len(text)


def _spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every password in `text`, in order, not overlapping."""
    found: list[tuple[int, int]] = []
    for url in _URL.finditer(text):
        rest, base = url.group(1), url.start(1)
        at = rest.rfind("@")
        if at > 0:
            colon = rest.find(":", 0, at)
        else:
            # a password with a space in it splits the URL: its '@' is further along the line
            colon = rest.find(":")
            line_end = text.find("\n", url.end())
            beyond = text.find("@", url.end(), line_end if line_end >= 0 else len(text))
            at = beyond - base if beyond >= 0 else -1
        if colon >= 0 and at > colon + 1:
            found.append((base + colon + 1, base + at))
    for key in _KEY.finditer(text):
        if _sensitive(key.group(1)):
            end = _value_end(text, key.end())
            if end > key.end():
                found.append((key.end(), end))
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _plain(value: str) -> str:
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def secrets_in(text: str) -> set[str]:
    """The passwords `text` carries, as written and decoded (for `remember`)."""
    out: set[str] = set()
    for start, end in _spans(text):
        raw = _plain(text[start:end])
        out |= {raw, unquote(raw)}
    return {s for s in out if s}


def remember(text: str | None, *, whole: bool = False) -> None:
    """Mask these secrets in every later `redact`: the passwords in a URL or DSN, or (whole=True)
    the text itself, e.g. a bearer token."""
    if not text:
        return
    found = {text} if whole else secrets_in(text)
    with _lock:
        _remembered.update(s for s in found if len(s) >= MIN_REMEMBERED)


def redact(text: str) -> str:
    """`text` with every password it carries replaced by ***."""
    spans = _spans(text)
    if spans:
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            pieces += [text[last:start], MASK]
            last = end
        pieces.append(text[last:])
        text = "".join(pieces)
    with _lock:
        known = sorted(_remembered, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
