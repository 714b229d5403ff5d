"""Canonical tensor bytes, state digests and seed derivation.

A digest never covers file bytes. It covers, for each tensor in name order, a record::

    u32 len(name) | name (UTF-8) | u8 len(dtype) | dtype (numpy name, or "bfloat16")
    | u8 ndim | u64 shape[0..ndim) | data, little-endian, C order

all fed to SHA-256 under a domain-separation prefix. Two files holding the same tensors in
any layout, compression or order have the same digest.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

HASH_NAME = "sha256"
_NATIVE_LE = np.little_endian


def contiguous(array: np.ndarray) -> np.ndarray:
    """C-contiguous without promoting 0-d arrays to 1-d (unlike ``np.ascontiguousarray``)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _le(array: np.ndarray) -> np.ndarray:
    """The array as a little-endian, C-contiguous view (copying only when needed)."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not _NATIVE_LE):
        array = array.astype(array.dtype.newbyteorder("<"))
    return contiguous(array)


def dtype_name(array: np.ndarray) -> str:
    """Canonical dtype name; bfloat16 travels as uint16 bits with an explicit name."""
    return str(array.dtype.newbyteorder("=")) if array.dtype.byteorder != "|" else str(array.dtype)


def record_header(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    name_b = name.encode("utf-8")
    dtype_b = dtype.encode("ascii")
    return (
        struct.pack("<I", len(name_b)) + name_b
        + struct.pack("<B", len(dtype_b)) + dtype_b
        + struct.pack("<B", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
    )


def update_with_tensor(h: "hashlib._Hash", name: str, array: np.ndarray, dtype: str | None = None) -> None:
    """Feed one canonical tensor record into a running hash."""
    arr = _le(array)
    h.update(record_header(name, dtype or dtype_name(arr), tuple(int(s) for s in arr.shape)))
    h.update(memoryview(arr).cast("B") if arr.size else b"")


OPTIMIZER_STATE = "optim/state/"  # per-parameter optimizer tensors (momentum, Adam moments)


def _records_digest(state: Mapping[str, np.ndarray], domain: bytes,
                    dtypes: Mapping[str, str] | None = None) -> bytes:
    """Digest of a named set of tensors, independent of insertion order; ``dtypes`` overrides
    dtype names (bfloat16 travels as uint16 bits)."""
    h = hashlib.new(HASH_NAME)
    h.update(domain)
    h.update(struct.pack("<Q", len(state)))
    for name in sorted(state):
        update_with_tensor(h, name, state[name], (dtypes or {}).get(name))
    return h.digest()


def main_state_digest(state: Mapping[str, np.ndarray]) -> bytes:
    """Digest of everything in a checkpoint but its per-parameter optimizer state."""
    return _records_digest({k: v for k, v in state.items() if not k.startswith(OPTIMIZER_STATE)},
                           b"pol-state-main-v1")


def optimizer_state_digest(state: Mapping[str, np.ndarray]) -> bytes:
    """Digest of a checkpoint's per-parameter optimizer state (``optim/state/...``) alone."""
    return _records_digest({k: v for k, v in state.items() if k.startswith(OPTIMIZER_STATE)},
                           b"pol-state-optim-v1")


def combine_state_digest(main: bytes, optimizer: bytes) -> bytes:
    return tagged_hash(b"pol-state-v2", main, optimizer)


def state_digest(state: Mapping[str, np.ndarray]) -> bytes:
    """Digest of a checkpoint, in two halves: the optimizer state and everything else.

    The split lets a checkpoint be stored without its optimizer state (the last checkpoint
    of a compact proof, which no replay starts from) and still be checked against the chain:
    hash what is stored and combine it with the stored digest of what is not.
    """
    return combine_state_digest(main_state_digest(state), optimizer_state_digest(state))


def weights_digest(weights: Mapping[str, np.ndarray], dtypes: Mapping[str, str] | None = None) -> bytes:
    """Digest of model weights named as in ``model.state_dict()`` (the ``pol digest`` value)."""
    return _records_digest(weights, b"pol-weights-v1", dtypes)


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII only, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def tagged_hash(tag: bytes, *parts: bytes) -> bytes:
    h = hashlib.new(HASH_NAME)
    h.update(struct.pack("<H", len(tag)) + tag)
    for part in parts:
        h.update(struct.pack("<Q", len(part)))
        h.update(part)
    return h.digest()


def derive_seed(seed: int, label: str, *counters: int) -> int:
    """A 63-bit seed derived from the run seed, a purpose label and counters (e.g. a step)."""
    payload = struct.pack("<q", seed) + label.encode() + b"".join(struct.pack("<q", c) for c in counters)
    return int.from_bytes(tagged_hash(b"pol-derive-v1", payload)[:8], "little") & (2**63 - 1)

