"""Data commitment: a Merkle root over per-sample digests in dataset order.

A sample is a tuple of tensors (fields named ``"0"``, ``"1"``, ... by position), a dict of
tensors (fields named by key), or one tensor (field ``"0"``)::

    sample_digest(i) = SHA-256("pol-sample-v2" || u32 field count || record(name, tensor) per field)

with the canonical tensor records of :mod:`pol.hashing`, fields in their committed order (tuple
position, or sorted keys). The root is :func:`pol.merkle.merkle_root` over those digests in
index order: every field (features, masks AND labels) is bound, and so is the order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pol.errors import PlanError
from pol.hashing import contiguous, dtype_name, update_with_tensor
from pol.merkle import merkle_root

SAMPLE_DIGEST = "sha256/pol-sample-v2"


def _as_numpy(value: Any, field: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise PlanError(f"sample field {field!r} is bfloat16; commit data as float32")
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise PlanError(f"sample field {field!r} is not numeric ({arr.dtype}); samples must be tensors or numbers")
    return contiguous(arr)


def sample_items(sample: Any) -> list[tuple[str, Any]]:
    """(field name, value) pairs of one sample, in committed order."""
    if isinstance(sample, Mapping):
        if not all(isinstance(k, str) for k in sample):
            raise PlanError("dict samples must have string keys")
        return [(k, sample[k]) for k in sorted(sample)]
    if isinstance(sample, Sequence) and not isinstance(sample, (str, bytes)):
        return [(str(i), v) for i, v in enumerate(sample)]
    return [("0", sample)]


def sample_fields(dataset: Any) -> list[str]:
    """Field names of the data set's samples (from its first sample)."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return [str(i) for i in range(len(tensors))]
    if len(dataset) == 0:
        return []
    return [name for name, _ in sample_items(dataset[0])]


def _digest(base: Any, items: list[tuple[str, np.ndarray]], dtypes: list[str | None]) -> bytes:
    h = base.copy()
    h.update(struct.pack("<I", len(items)))
    for (name, arr), dt in zip(items, dtypes):
        update_with_tensor(h, name, arr, dt)
    return h.digest()


def sample_digests(dataset: Any) -> list[bytes]:
    base = hashlib.sha256(b"pol-sample-v2")
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:  # TensorDataset: every sample has the dtype of its array, name it once
        arrays = [_as_numpy(t, str(i)) for i, t in enumerate(tensors)]
        names, dtypes = [str(i) for i in range(len(arrays))], [dtype_name(a) for a in arrays]
        return [_digest(base, list(zip(names, row)), dtypes) for row in zip(*arrays)]
    fields = None
    out: list[bytes] = []
    for i in range(len(dataset)):
        items = [(name, _as_numpy(v, name)) for name, v in sample_items(dataset[i])]
        names = [name for name, _ in items]
        if fields is None:
            fields = names
        elif names != fields:
            raise PlanError(f"sample {i} has fields {names}, sample 0 has {fields}: samples must share one structure")
        out.append(_digest(base, items, [None] * len(items)))
    return out


def data_root(dataset: Any) -> bytes:
    return merkle_root(sample_digests(dataset))
