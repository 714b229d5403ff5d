"""Framing of every message between coordinator and workers, and of stored round proofs.

A frame is ``u32 LE len(header) | header | tensors``: the header is canonical JSON (an object),
the tensors a safetensors blob (possibly empty). Nothing is ever unpickled; a frame from another
node is untrusted and :func:`decode_frame` turns every defect into :class:`WorkersFormatError`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from pol.errors import InputError, short_reason
from pol.hashing import canonical_json, contiguous
from pol.smallfiles import parse_json

MAX_HEADER_BYTES = 4 << 20


class WorkersFormatError(InputError, ValueError):
    """A frame, round proof or log entry that does not follow docs/WORKERS.md."""


def encode_frame(header: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> bytes:
    from safetensors.numpy import save

    head = canonical_json(dict(header))
    blob = save({k: contiguous(v) for k, v in tensors.items()}) if tensors else b""
    return struct.pack("<I", len(head)) + head + blob


def decode_frame(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, tensors) of a frame; :class:`WorkersFormatError` for anything else."""
    if len(raw) < 4:
        raise WorkersFormatError(f"frame of {len(raw)} bytes is shorter than its length prefix")
    (n,) = struct.unpack_from("<I", raw)
    if n > MAX_HEADER_BYTES or 4 + n > len(raw):
        raise WorkersFormatError(f"frame header length {n} does not fit the frame of {len(raw)} bytes")
    try:
        header = parse_json(raw[4:4 + n].decode("ascii"), "frame header", ValueError)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkersFormatError(f"frame header is not JSON: {short_reason(exc)}") from None
    if not isinstance(header, dict):
        raise WorkersFormatError("frame header is not a JSON object")
    blob = raw[4 + n:]
    return header, (_load_tensors(blob) if blob else {})


def _load_tensors(blob: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        tensors = load(bytes(blob))
    except Exception as exc:  # safetensors raises its own SafetensorError (not an Exception subclass we can name)
        raise WorkersFormatError(f"tensors are not a valid safetensors blob: {short_reason(exc)}") from None
    return {k: np.asarray(v) for k, v in tensors.items()}


def field(header: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str = "message") -> Any:
    """``header[name]`` checked to be of ``kind`` (bool is never an int here)."""
    if name not in header:
        raise WorkersFormatError(f"{what} has no field {name!r}")
    value = header[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise WorkersFormatError(f"{what} field {name!r} must be {' or '.join(k.__name__ for k in kinds)}, "
                               f"found {type(value).__name__}")
    return value


def hex_digest(header: Mapping[str, Any], name: str, what: str = "message", size: int = 32) -> bytes:
    value = field(header, name, str, what)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise WorkersFormatError(f"{what} field {name!r} is not hex") from None
    if len(raw) != size:
        raise WorkersFormatError(f"{what} field {name!r} must be {size} bytes, found {len(raw)}")
    return raw
