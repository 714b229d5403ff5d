"""Strict parsing of JSON from other parties: one meaning per document.

Duplicate keys, ``NaN``/``Infinity`` and numbers that overflow to infinity (``1e999``) raise
``ValueError``; callers turn it into their own input error. The counterpart of
:func:`pol.hashing.canonical_json`, which never writes any of them.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf, which canonical JSON cannot hold
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads_strict(data: bytes | str) -> Any:
    """Parse JSON strictly; raise ``ValueError`` (``UnicodeDecodeError``, ``RecursionError`` pass
    as ``ValueError`` too) on anything with more than one reading."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_float=_finite_float)
    except RecursionError as exc:
        raise ValueError(f"nested too deeply: {exc}") from None
