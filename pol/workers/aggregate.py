"""Aggregation rules, bitwise defined so that a third party recomputes them exactly.

Every rule works on the updates ``Δ_i = W_i − G`` (elementwise, in the tensor's dtype) of its
inputs, listed by ascending worker id, and returns ``G' = G + A(Δ_1..Δ_k)`` per tensor:

* ``fedavg`` (and ``replay_verified``, which averages only the updates that replayed):
  ``acc = 0; acc = acc + Δ_i`` in worker order; ``A = acc / k``.
* ``median``: per coordinate, sort the k values; the middle one, or ``(lo + hi) / 2``.
* ``trimmed_mean``: per coordinate, sort, drop the ``f`` lowest and ``f`` highest, sum the rest
  in sorted order, divide by ``k − 2f`` (the median when ``k <= 2f``).
* ``krum`` (Blanchard et al. 2017): the update whose summed squared distance (float64, over all
  floating tensors in name order) to its ``max(1, k − f − 2)`` nearest others is smallest
  (ties: the lower worker id); ``A`` is that update.

Integer tensors (BatchNorm's ``num_batches_tracked``) take the floor of the mean whatever the rule.
No inputs leave ``G`` unchanged. NumPy's elementwise float arithmetic is IEEE-754 exact per
element, so the result does not depend on the machine or the thread count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class Aggregation:
    weights: Weights
    inputs: list[int]            # worker ids whose updates went in, ascending
    selected: int | None = None  # Krum: the worker whose update was taken


def _delta(end: np.ndarray, start: np.ndarray) -> np.ndarray:
    return np.subtract(end, start, dtype=start.dtype)


def _integer_mean(start: np.ndarray, ends: Sequence[np.ndarray]) -> np.ndarray:
    acc = np.zeros(start.shape, dtype=np.int64)
    for end in ends:
        acc = acc + _delta(end, start).astype(np.int64)
    return (start.astype(np.int64) + acc // len(ends)).astype(start.dtype)


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _per_tensor(global_w: Mapping[str, np.ndarray], ends: Sequence[Mapping[str, np.ndarray]], combine) -> Weights:
    if not ends:
        return {k: v.copy() for k, v in global_w.items()}
    out: Weights = {}
    for name in sorted(global_w):
        start = global_w[name]
        values = [e[name] for e in ends]
        if not _is_float(start):
            out[name] = _integer_mean(start, values)
            continue
        deltas = np.stack([_delta(v, start) for v in values])
        out[name] = np.add(start, combine(deltas), dtype=start.dtype)
    return out


def _mean(deltas: np.ndarray) -> np.ndarray:
    acc = np.zeros(deltas.shape[1:], dtype=deltas.dtype)
    for d in deltas:
        acc = acc + d
    return acc / deltas.dtype.type(len(deltas))


def _median(deltas: np.ndarray) -> np.ndarray:
    s = np.sort(deltas, axis=0, kind="stable")
    k = len(s)
    if k % 2:
        return s[k // 2]
    return (s[k // 2 - 1] + s[k // 2]) / deltas.dtype.type(2)


def fedavg(global_w: Mapping[str, np.ndarray], ends: Sequence[Mapping[str, np.ndarray]]) -> Weights:
    return _per_tensor(global_w, ends, _mean)


def coordinate_median(global_w: Mapping[str, np.ndarray], ends: Sequence[Mapping[str, np.ndarray]]) -> Weights:
    return _per_tensor(global_w, ends, _median)


def trimmed_mean(global_w: Mapping[str, np.ndarray], ends: Sequence[Mapping[str, np.ndarray]], trim: int) -> Weights:
    def combine(deltas: np.ndarray) -> np.ndarray:
        if len(deltas) <= 2 * trim:
            return _median(deltas)
        kept = np.sort(deltas, axis=0, kind="stable")[trim:len(deltas) - trim]
        return _mean(kept)
    return _per_tensor(global_w, ends, combine)


def krum_select(global_w: Mapping[str, np.ndarray], ends: Sequence[Mapping[str, np.ndarray]], f: int) -> int:
    """Position (in ``ends``) of the update Krum selects."""
    names = [n for n in sorted(global_w) if _is_float(global_w[n])]
    flat = np.stack([np.concatenate([_delta(e[n], global_w[n]).astype(np.float64).ravel() for n in names])
                     for e in ends])
    k = len(ends)
    if k == 1:
        return 0
    neighbours = max(1, k - f - 2)
    scores = []
    for i in range(k):
        d = np.sort(np.array([float(np.sum((flat[i] - flat[j]) ** 2)) for j in range(k) if j != i]))
        scores.append(float(np.sum(d[:neighbours])))
    return int(np.argmin(np.array(scores)))  # argmin: the first (lowest worker id) among equals


def aggregate(rule: str, global_w: Mapping[str, np.ndarray], inputs: Sequence[tuple[int, Mapping[str, np.ndarray]]],
              f: int = 0) -> Aggregation:
    """Apply ``rule`` to ``inputs`` = [(worker id, end weights)] (sorted here by worker id)."""
    ordered = sorted(inputs, key=lambda item: item[0])
    ids, ends = [w for w, _ in ordered], [e for _, e in ordered]
    if rule in ("fedavg", "replay_verified"):
        return Aggregation(fedavg(global_w, ends), ids)
    if rule == "median":
        return Aggregation(coordinate_median(global_w, ends), ids)
    if rule == "trimmed_mean":
        return Aggregation(trimmed_mean(global_w, ends, f), ids)
    if rule == "krum":
        if not ends:
            return Aggregation(fedavg(global_w, ends), ids)
        pos = krum_select(global_w, ends, f)
        return Aggregation(fedavg(global_w, [ends[pos]]), ids, ids[pos])
    raise ValueError(f"unknown aggregation rule {rule!r}")
