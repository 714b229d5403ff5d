"""Data commitment: a Merkle root over per-sample digests in dataset order.

sample_digest(i) = SHA-256("pol-sample-v1" || record("x", features_i) || record("y", label_i))
with the canonical tensor records of :mod:`pol.hashing`; the root is :func:`pol.merkle.merkle_root`
over those digests in index order. Features AND labels are bound, and so is their order.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pol.hashing import contiguous, dtype_name, record_header
from pol.merkle import merkle_root

SAMPLE_DIGEST = "sha256/pol-sample-v1"


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return contiguous(np.asarray(value))


def dataset_arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, labels) as arrays when the data set is a two-tensor TensorDataset."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) == 2:
        return _as_numpy(tensors[0]), _as_numpy(tensors[1])
    return None


def sample_digests(dataset: Any) -> list[bytes]:
    arrays = dataset_arrays(dataset)
    base = hashlib.sha256(b"pol-sample-v1")
    out: list[bytes] = []
    if arrays is not None:
        xs, ys = arrays
        hx = record_header("x", dtype_name(xs), tuple(xs.shape[1:]))
        hy = record_header("y", dtype_name(ys), tuple(ys.shape[1:]))
        xs2 = xs.reshape(len(xs), -1).view(np.uint8) if xs.size else xs
        ys2 = ys.reshape(len(ys), -1).view(np.uint8) if ys.size else ys
        for i in range(len(xs)):
            h = base.copy()
            h.update(hx)
            h.update(xs2[i].data)
            h.update(hy)
            h.update(ys2[i].data)
            out.append(h.digest())
        return out
    for i in range(len(dataset)):
        x, y = dataset[i]
        xa, ya = _as_numpy(x), _as_numpy(y)
        h = base.copy()
        h.update(record_header("x", dtype_name(xa), tuple(xa.shape)))
        h.update(xa.tobytes())
        h.update(record_header("y", dtype_name(ya), tuple(ya.shape)))
        h.update(ya.tobytes())
        out.append(h.digest())
    return out


def data_root(dataset: Any) -> bytes:
    return merkle_root(sample_digests(dataset))
