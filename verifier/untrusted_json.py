"""Strict reading of JSON documents that other parties send (votes, dispute messages).

Duplicate keys, ``NaN``/``Infinity``, files that are not regular files and documents above a
size cap are refused (:mod:`pol.smallfiles`) with :class:`pol.errors.InputError` subclasses, so a
document means one thing only.
Field helpers check JSON types exactly (a bool is not an int).
"""

from __future__ import annotations

import os
from typing import Any

from pol.errors import InputError
from pol.smallfiles import parse_json, read_small_file


class DocumentError(InputError, ValueError):
    """A JSON document from another party is malformed."""


def loads(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse one JSON object strictly (:func:`pol.smallfiles.parse_json`)."""
    doc = parse_json(data, what, DocumentError)
    if not isinstance(doc, dict):
        raise DocumentError(f"{what} is not a JSON object")
    return doc


def load(path: str | os.PathLike[str], max_bytes: int, what: str) -> dict[str, Any]:
    """Read (a regular file, at most ``max_bytes``: :func:`pol.smallfiles.read_small_file`) and parse
    a JSON object."""
    return loads(read_small_file(path, max_bytes, what, DocumentError), f"{what} {path}")


def field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, *, optional: bool = False) -> Any:
    """``obj[key]`` of JSON type ``kind`` (None allowed when ``optional``)."""
    if key not in obj:
        raise DocumentError(f"{what}: missing field {key!r}")
    value = obj[key]
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise DocumentError(f"{what}: field {key!r} must be {'/'.join(k.__name__ for k in kinds)}, found a bool")
    if not isinstance(value, kinds):
        raise DocumentError(f"{what}: field {key!r} must be {'/'.join(k.__name__ for k in kinds)}, "
                            f"found {type(value).__name__}")
    return value


def hex_field(obj: dict[str, Any], key: str, size: int, what: str, *, optional: bool = False) -> bytes | None:
    """A hex string of exactly ``size`` bytes."""
    value = field(obj, key, str, what, optional=optional)
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise DocumentError(f"{what}: field {key!r} is not hex") from None
    if len(raw) != size:
        raise DocumentError(f"{what}: field {key!r} must be {size} bytes, found {len(raw)}")
    return raw


def int_list(obj: dict[str, Any], key: str, what: str, limit: int = 1_000_000) -> list[int]:
    """A list of non-negative integers (at most ``limit`` of them)."""
    value = field(obj, key, list, what)
    if len(value) > limit or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise DocumentError(f"{what}: field {key!r} must be a list of non-negative integers")
    return list(value)


def no_other_fields(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise DocumentError(f"{what}: unknown field(s) {', '.join(repr(e[:40]) for e in extra[:5])}")
