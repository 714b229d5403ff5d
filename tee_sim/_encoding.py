"""Small encoding helpers shared by the modules (private)."""

from __future__ import annotations

import json
import math
from typing import Any

from pol.hashing import canonical_json  # one canonical JSON for the whole project
from tee_sim.errors import TeeInputError

__all__ = ["canonical_json", "strict_json_loads", "from_hex", "require"]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf, which canonical JSON cannot hold
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def strict_json_loads(data: bytes | str, error: type[TeeInputError], what: str) -> Any:
    """Parse untrusted JSON, rejecting duplicate keys and NaN/Infinity (also as 1e999), raising ``error``."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None


def from_hex(value: Any, length: int | None, error: type[TeeInputError], what: str) -> bytes:
    """Decode a hex string of an exact byte length (or any length when ``length`` is None)."""
    if not isinstance(value, str):
        raise error(f"{what}: expected a hex string, found {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise error(f"{what}: not a hex string: {value[:40]!r}") from None
    if length is not None and len(raw) != length:
        raise error(f"{what}: expected {length} bytes ({2 * length} hex digits), found {len(raw)} bytes")
    return raw


def require(obj: Any, key: str, kind: type | tuple[type, ...], error: type[TeeInputError], what: str) -> Any:
    """Fetch ``obj[key]`` and check its JSON type (bools are not ints)."""
    if not isinstance(obj, dict):
        raise error(f"{what}: expected a JSON object, found {type(obj).__name__}")
    if key not in obj:
        raise error(f"{what}: missing field {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise error(f"{what}: field {key!r} must be {'/'.join(k.__name__ for k in kinds)}, found bool")
    if not isinstance(value, kinds):
        raise error(
            f"{what}: field {key!r} must be {'/'.join(k.__name__ for k in kinds)}, found {type(value).__name__}"
        )
    return value
