"""Escaping text that came from a file before it reaches a terminal or a report.

A proof, a weights file or a key can carry any string (a plan field, an attribute, a tensor
name, an error message quoting the file). Written to a terminal as is, control characters and
ANSI escape sequences can retitle the window, clear or rewrite lines, hide text, or reorder it
(Unicode bidirectional controls). :func:`printable` replaces every such character with a visible
escape (``\\x1b``, ``\\u202e``), and, unless told otherwise, line breaks too, so one message stays
one line. Every human-readable renderer and the CLI's error path use it; JSON output escapes
control characters by itself.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_KEEP_LINES = frozenset("\n\t")


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """``str(text)`` with control and format characters escaped; line breaks and tabs kept only
    when ``multiline``. ``limit`` cuts the result (marked with an ellipsis)."""
    s = str(text)
    if multiline:
        s = _UNSAFE.sub(lambda m: m.group() if m.group() in _KEEP_LINES else _escape(m.group()), s)
    else:
        s = _UNSAFE.sub(lambda m: _escape(m.group()), s)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s
