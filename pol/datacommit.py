"""Data commitment: a Merkle root over per-sample digests in dataset order.

sample_digest(i) = SHA-256("pol-sample-v1" || record("x", features_i) || record("y", label_i))
with the canonical tensor records of :mod:`pol.hashing`; the root is :func:`pol.merkle.merkle_root`
over those digests in index order. Features AND labels are bound, and so is their order.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pol.hashing import contiguous, dtype_name, update_with_tensor
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
    if arrays is not None:  # every sample has the dtype of its array: name it once
        samples, x_dtype, y_dtype = zip(*arrays), dtype_name(arrays[0]), dtype_name(arrays[1])
    else:
        samples, x_dtype, y_dtype = (dataset[i] for i in range(len(dataset))), None, None
    base = hashlib.sha256(b"pol-sample-v1")
    out: list[bytes] = []
    for x, y in samples:
        h = base.copy()
        update_with_tensor(h, "x", _as_numpy(x), x_dtype)
        update_with_tensor(h, "y", _as_numpy(y), y_dtype)
        out.append(h.digest())
    return out


def data_root(dataset: Any) -> bytes:
    return merkle_root(sample_digests(dataset))
