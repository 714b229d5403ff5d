"""Loading published weights files safely, and their per-tensor manifest digest.

A weights file is untrusted input. ``.safetensors`` files are checked before they are parsed:
the header length is bounded (:data:`MAX_HEADER_BYTES`), the header must be a JSON object of
known dtypes and shapes, and every tensor's byte range must lie inside the file and match its
shape. Pickle-based files (``.pt``, ``.pth``, ``.bin``) are refused unless the caller allows
them, and are then read only with ``torch.load(path, weights_only=True, map_location="cpu")``.
Every malformation becomes :class:`~pol.errors.WeightsFileError` (CLI exit code 2).

Tensors come back as numpy arrays named as in the file; bfloat16 travels as its uint16 bits
with the canonical dtype name ``"bfloat16"`` kept beside it, as :mod:`pol.hashing` does.
The digest of a file is :func:`pol.hashing.weights_digest` over its tensors (so a float32
export of a proof digests to the proof's signed ``final_weights_digest``); it covers names,
dtypes, shapes and values, never file bytes, so layout, order and metadata do not change it.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pol.errors import WeightsFileError, short_reason
from pol.hashing import HASH_NAME, dtype_name, update_with_tensor, weights_digest
from pol.smallfiles import parse_json

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
MAX_HEADER_BYTES = 16 << 20          # safetensors itself stops at 100 MB; 100,000 entries take ~8 MB
MAX_TENSORS = 100_000
TENSOR_DOMAIN = b"pol-tensor-v1"

# safetensors dtype -> (canonical name, item size)
_ST_DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
CAST_RULES = {"bf16": "bfloat16", "fp16": "float16"}


def is_weights_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in WEIGHTS_SUFFIXES


@dataclass
class WeightsFile:
    """Tensors read from a weights file (numpy; bfloat16 as uint16 bits, see ``dtypes``)."""

    path: str
    format: str                                   # "safetensors" | "pickle"
    tensors: dict[str, np.ndarray]
    dtypes: dict[str, str]                        # canonical dtype name per tensor
    metadata: dict[str, str] = field(default_factory=dict)
    ties: dict[str, str] = field(default_factory=dict)   # alias -> name it shares storage with
    notes: list[str] = field(default_factory=list)

    def digest(self) -> bytes:
        return weights_digest(self.tensors, self.dtypes)

    def tensor_digests(self) -> dict[str, str]:
        return {name: tensor_digest(name, self.tensors[name], self.dtypes[name]).hex() for name in sorted(self.tensors)}


def tensor_digest(name: str, array: np.ndarray, dtype: str | None = None) -> bytes:
    h = hashlib.new(HASH_NAME)
    h.update(TENSOR_DOMAIN)
    update_with_tensor(h, name, array, dtype)
    return h.digest()


def load_weights(path: str | os.PathLike[str], *, allow_pickle: bool = False,
                 max_header_bytes: int = MAX_HEADER_BYTES) -> WeightsFile:
    """Read a weights file by its suffix; raise :class:`WeightsFileError` on anything odd."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WEIGHTS_SUFFIXES:
        raise WeightsFileError(f"{p}: not a weights file (expected one of {', '.join(WEIGHTS_SUFFIXES)})")
    if not p.is_file():
        raise WeightsFileError(f"weights file not found: {p}")
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise WeightsFileError(f"{p} is a pickle file; refusing to load it. Convert it to .safetensors, or pass "
                                   "--allow-pickle to read it with torch.load(weights_only=True)")
        return _load_pickle(p)
    return _load_safetensors(p, max_header_bytes)


# -- safetensors ------------------------------------------------------------------------------
def check_safetensors_header(path: Path, max_header_bytes: int = MAX_HEADER_BYTES) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the header without trusting it; return (tensor entries, metadata)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise WeightsFileError(f"{path}: too short to be a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > max_header_bytes:
            raise WeightsFileError(f"{path}: header claims {n} bytes, more than the {max_header_bytes}-byte limit")
        if 8 + n > size:
            raise WeightsFileError(f"{path}: header claims {n} bytes but the file holds {size - 8} after the length")
        raw = fh.read(n)
    # Strict JSON (pol.smallfiles.parse_json): bounded nesting, no NaN, no duplicate tensor names.
    header = parse_json(raw, f"{path}: safetensors header", WeightsFileError)
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightsFileError(f"{path}: __metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise WeightsFileError(f"{path}: {len(header)} tensors is more than the {MAX_TENSORS} allowed")
    data_size = size - 8 - n
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise WeightsFileError(f"{path}: tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _ST_DTYPES:
            raise WeightsFileError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > 64
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 48 for s in shape)):
            raise WeightsFileError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise WeightsFileError(f"{path}: tensor {name!r} has invalid data_offsets")
        start, stop = offsets
        if not 0 <= start <= stop <= data_size:
            raise WeightsFileError(f"{path}: tensor {name!r} lies outside the file (bytes {start}..{stop} of {data_size})")
        if stop - start != math.prod(shape) * _ST_DTYPES[dtype][1]:
            raise WeightsFileError(f"{path}: tensor {name!r} holds {stop - start} bytes, its shape needs "
                                   f"{math.prod(shape) * _ST_DTYPES[dtype][1]}")
        spans.append((start, stop))
    end = 0  # the furthest byte any earlier (non-empty) tensor reaches
    for start, stop in sorted(spans):
        if stop > start:
            if start < end:
                raise WeightsFileError(f"{path}: tensors overlap in the data area")
            end = max(end, stop)
    return header, metadata


def _load_safetensors(path: Path, max_header_bytes: int) -> WeightsFile:
    header, metadata = check_safetensors_header(path, max_header_bytes)
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - older safetensors
        SafetensorError = Exception  # type: ignore[misc,assignment]
    from safetensors.torch import load_file

    try:
        loaded = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise WeightsFileError(f"{path}: unreadable safetensors file ({short_reason(exc)})") from None
    tensors, dtypes = {}, {}
    for name, t in loaded.items():
        tensors[name], dtypes[name] = torch_to_numpy(t)
    for name, entry in header.items():
        if dtypes.get(name) != _ST_DTYPES[entry["dtype"]][0]:
            raise WeightsFileError(f"{path}: tensor {name!r} did not load as its declared {entry['dtype']}")
    ties: dict[str, str] = {}
    if "pol.tied" in metadata:
        try:
            declared = parse_json(metadata["pol.tied"], "pol.tied", ValueError)
            if not isinstance(declared, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in declared.items()):
                raise ValueError("not an object of names")
            ties = dict(declared)
        except ValueError as exc:
            raise WeightsFileError(f"{path}: metadata pol.tied is malformed ({short_reason(exc)})") from None
        for alias, target in ties.items():  # an alias is a name the file does not hold, of one it does
            if alias in tensors or target not in tensors:
                raise WeightsFileError(f"{path}: metadata pol.tied maps {alias[:60]!r} to {target[:60]!r}; a tied alias "
                                       "must be absent from the file and name a tensor the file holds")
    return WeightsFile(str(path), "safetensors", tensors, dtypes, dict(metadata), ties)


# -- pickle (opt-in) --------------------------------------------------------------------------
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def _load_pickle(path: Path) -> WeightsFile:
    import pickle

    import torch

    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, OSError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise WeightsFileError(f"{path}: torch.load(weights_only=True) refused or failed ({short_reason(exc)})") from None
    notes: list[str] = []
    if isinstance(obj, Mapping) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
                notes.append(f"weights taken from the {key!r} entry of the pickle")
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise WeightsFileError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    tensors, dtypes = {}, {}
    for name, t in obj.items():
        tensors[name], dtypes[name] = torch_to_numpy(t)
    return WeightsFile(str(path), "pickle", tensors, dtypes, {}, shared_storage(obj), notes)


# -- helpers ----------------------------------------------------------------------------------
def torch_to_numpy(t: Any) -> tuple[np.ndarray, str]:
    """A CPU tensor as (numpy array, canonical dtype name); bfloat16 as uint16 bits."""
    import torch

    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).copy(), "bfloat16"
    try:
        arr = t.numpy().copy()
    except (TypeError, RuntimeError) as exc:
        raise WeightsFileError(f"tensor dtype {t.dtype} is not supported ({short_reason(exc)})") from None
    return arr, dtype_name(arr)


def shared_storage(state: Mapping[str, Any]) -> dict[str, str]:
    """Names that alias an earlier name's tensor (same storage, offset, shape and strides)."""
    seen: dict[tuple[Any, ...], str] = {}
    ties: dict[str, str] = {}
    for name, t in state.items():
        if t.device.type == "meta" or t.numel() == 0:
            continue
        key = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
               tuple(t.stride()), t.dtype)
        if key in seen:
            ties[name] = seen[key]
        else:
            seen[key] = name
    return ties


def cast_array(array: np.ndarray, target: str) -> tuple[np.ndarray, str]:
    """Cast a floating-point array to ``target`` (bfloat16 | float16) with round-to-nearest-even."""
    import torch

    if target == "float16":
        return np.asarray(array).astype(np.float16), "float16"
    if target == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(array)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().view(np.uint16).copy(), "bfloat16"
    raise ValueError(f"unknown cast target {target!r}")


def numpy_to_torch(array: np.ndarray, dtype: str) -> Any:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t
