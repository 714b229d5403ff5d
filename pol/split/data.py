"""What each node holds of the data, and the per-owner data commitments.

The data owner (node 0) holds the features and commits them; the label owner (the node that
holds the last stage) holds the labels and commits them. Both commitments are Merkle roots
(:mod:`pol.merkle`) over per-sample digests in dataset order::

    feature_i = SHA-256("pol-split-feature-v1" || record("x", features_i))
    label_i   = SHA-256("pol-split-label-v1"   || record("y", label_i))

with the canonical tensor records of :mod:`pol.hashing`. A middle node holds neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.errors import DataUnavailableError
from pol.hashing import contiguous, dtype_name, update_with_tensor
from pol.merkle import merkle_root


@dataclass(frozen=True)
class NodeData:
    """The columns of the training set a node may see (torch tensors, dataset order)."""

    features: Any | None = None
    labels: Any | None = None

    @property
    def num_samples(self) -> int:
        held = self.features if self.features is not None else self.labels
        return 0 if held is None else int(held.shape[0])


def _digests(array: np.ndarray, domain: bytes, name: str) -> list[bytes]:
    array = contiguous(np.asarray(array))
    dtype = dtype_name(array)
    base = hashlib.sha256(domain)
    out = []
    for row in array:
        h = base.copy()
        update_with_tensor(h, name, row, dtype)
        out.append(h.digest())
    return out


def feature_root(features: Any) -> bytes:
    return merkle_root(_digests(_numpy(features), b"pol-split-feature-v1", "x"))


def label_root(labels: Any) -> bytes:
    return merkle_root(_digests(_numpy(labels), b"pol-split-label-v1", "y"))


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def training_columns(spec: str, kwargs: dict[str, Any] | None) -> tuple[Any, Any]:
    """(features, labels) of a task's training set (a two-tensor TensorDataset)."""
    from pol.tasks import load_data

    train = load_data(spec, kwargs or {}).train
    tensors = getattr(train, "tensors", None)
    if tensors is None or len(tensors) != 2:
        raise DataUnavailableError(f"the data of {spec!r} must be a TensorDataset of (features, labels) "
                                   "for split learning")
    return tensors[0], tensors[1]


def node_data(spec: str, kwargs: dict[str, Any] | None, *, features: bool, labels: bool) -> NodeData:
    """The columns a node holds: features for the data owner, labels for the label owner."""
    if not features and not labels:
        return NodeData()
    x, y = training_columns(spec, kwargs)
    return NodeData(x if features else None, y if labels else None)
