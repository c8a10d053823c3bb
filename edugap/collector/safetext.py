"""Text from outside (reports, topics, the registry, error messages) made safe where it goes.

- A terminal: `terminal()` escapes control characters (a school could otherwise send escape
  sequences that rewrite the operator's screen or title bar, or a bidi override that makes
  text read backwards) and hides passwords (edugap.protocol.redact). Every `edugap` command prints
  outside data through it, and the log formatter formats every log line with it.
- A spreadsheet: `neutralise()` makes a cell that starts like a formula (`=HYPERLINK(...)`,
  `+`, `-`, `@`, tab, CR) plain text by prefixing `'` (OWASP's advice for CSV injection,
  CWE-1236); every CSV the project writes uses it, and `unneutralise()` is how the registry
  import reads such a cell back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from edugap.protocol.redact import redact

# C0 and C1 controls and DEL, line and paragraph separators, and the bidi controls (Trojan
# Source, CVE-2021-42574). Vietnamese text and emoji pass unchanged.
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")

#: Prefixes that make a spreadsheet treat a text cell as a formula (CWE-1236).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _python_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: str, *, json: bool = False, keep_newlines: bool = False) -> str:
    """`text` with every control character written as an escape: `\\x1b`, `\\u202e`.

    json=True writes `\\u001b` instead, which keeps JSON valid and decoding to the same string.
    """
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_json_escape if json else _python_escape, text)


def terminal(text: object) -> str:
    """What may be printed on an operator's terminal: passwords hidden, controls escaped."""
    return printable(redact(str(text)))


def neutralise(text: str) -> str:
    """Text that a spreadsheet will show as text, never run as a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def unneutralise(text: str) -> str:
    """The cell `neutralise` was given (a leading ' before a formula prefix is dropped)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES) else text


class SafeFormatter(logging.Formatter):
    """Log lines with passwords hidden and control characters escaped; a traceback keeps its
    line breaks, a message does not (a topic with a newline cannot forge a log line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(redact(super().formatMessage(record)))

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return printable(redact(text), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return printable(redact(super().formatStack(stack_info)), keep_newlines=True)
