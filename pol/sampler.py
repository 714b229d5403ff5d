"""The committed batch order: a function of the seed alone, independent of library versions.

With ``P_e = SHA-256("pol-sampler-v1" || i64 seed || i64 e)``, epoch ``e`` orders the ``n``
sample indices by the key ``u64 LE of the first 8 bytes of SHA-256(P_e || i64 i)`` (stable sort:
ties broken by index), then cuts consecutive batches of ``batch_size``; an incomplete last
batch is dropped. Step ``t`` is batch ``t % steps_per_epoch`` of epoch ``t // steps_per_epoch``.
A verifier recomputes every step's indices from the plan (docs/FORMAT.md, Randomness rules).
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache

import numpy as np

from pol.errors import PlanError


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    prefix = hashlib.sha256(b"pol-sampler-v1" + struct.pack("<qq", seed, epoch)).digest()
    keys = np.empty(n, dtype=np.uint64)
    base = hashlib.sha256(prefix)
    for i in range(n):
        h = base.copy()
        h.update(struct.pack("<q", i))
        keys[i] = int.from_bytes(h.digest()[:8], "little")
    order = np.argsort(keys, kind="stable")
    order.setflags(write=False)
    return order


class BatchSchedule:
    """Indices of every step of a run, as committed by the plan."""

    def __init__(self, seed: int, num_samples: int, batch_size: int):
        if batch_size <= 0 or num_samples < batch_size:
            raise PlanError(f"batch size {batch_size} does not fit a data set of {num_samples} samples")
        self.seed, self.num_samples, self.batch_size = seed, num_samples, batch_size
        self.steps_per_epoch = num_samples // batch_size

    def indices(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = epoch_permutation(self.seed, epoch, self.num_samples)
        return perm[pos * self.batch_size:(pos + 1) * self.batch_size].astype(np.int64)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Indices of steps ``start..stop-1`` as an array of shape (stop-start, batch_size)."""
        if stop <= start:
            return np.empty((0, self.batch_size), dtype=np.int64)
        return np.stack([self.indices(t) for t in range(start, stop)])
