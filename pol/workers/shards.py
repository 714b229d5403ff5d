"""Shards and the committed local batch order of every worker.

Worker ``w`` (1..N) holds shard ``w``: the data set's indices permuted with
``epoch_permutation(derive_seed(seed, "workers-shards"), 0, n)`` and cut into N nearly equal
consecutive parts (``numpy.array_split``), each sorted. Its shard is committed in the plan as the
index list and the Merkle root over those samples' digests (in that order).

Local step ``s`` of round ``r`` is the worker's step ``t = r * local_steps + s``; its batch is
:class:`pol.sampler.BatchSchedule` (seed ``derive_seed(seed, "workers-order", w)``, over the
shard's positions) at ``t``, mapped to data set indices. Everything is a function of the plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pol.hashing import derive_seed
from pol.merkle import merkle_root
from pol.sampler import BatchSchedule, epoch_permutation


def assign_shards(seed: int, num_samples: int, workers: int) -> list[np.ndarray]:
    """Index arrays of the ``workers`` shards (shard of worker w at position w - 1)."""
    perm = epoch_permutation(derive_seed(seed, "workers-shards"), 0, num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, workers)]


def shard_root(sample_digests: Sequence[bytes], indices: Sequence[int]) -> bytes:
    return merkle_root([sample_digests[int(i)] for i in indices])


def round_indices(seed: int, worker: int, shard: np.ndarray, batch_size: int, local_steps: int,
                  round_index: int) -> np.ndarray:
    """Data set indices of each local step of one round: shape (local_steps, batch_size)."""
    schedule = BatchSchedule(derive_seed(seed, "workers-order", worker), len(shard), batch_size)
    first = round_index * local_steps
    return np.asarray(shard, dtype=np.int64)[schedule.block(first, first + local_steps)]
