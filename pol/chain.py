"""The hash chain over checkpoints (and, when recorded, the state after every step).

    d_0 = H("pol-chain-v2" | plan_digest | state_digest(ckpt_0))
    d_i = H("pol-chain-v2" | d_{i-1} | state_digest(ckpt_i) | indices_digest(steps since ckpt_{i-1})
            | steps_digest(state digests after each step strictly between ckpt_{i-1} and ckpt_i))

``state_digest`` covers the canonical bytes of every tensor of a state (name, dtype, shape,
little-endian data; see :mod:`pol.hashing`); ``indices_digest`` covers the batch indices of
every step of the segment; ``steps_digest`` the per-step state digests inside the segment (an
empty list when the plan does not record them). The chain head is signed at the end of the run.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np

from pol.hashing import tagged_hash, update_with_tensor

_TAG = b"pol-chain-v2"


def indices_digest(block: np.ndarray) -> bytes:
    h = hashlib.sha256(b"pol-indices-v1")
    update_with_tensor(h, "indices", np.asarray(block, dtype=np.int64))
    return h.digest()


def steps_digest(digests: Sequence[bytes]) -> bytes:
    """Digest of the per-step state digests inside one segment (in step order)."""
    h = hashlib.sha256(b"pol-steps-v1")
    h.update(struct.pack("<Q", len(digests)))
    for d in digests:
        h.update(d)
    return h.digest()


def genesis(plan_digest: bytes, state_digest: bytes) -> bytes:
    return tagged_hash(_TAG, plan_digest, state_digest)


def link(previous: bytes, state_digest: bytes, indices_block: np.ndarray,
         intermediate: Sequence[bytes] = ()) -> bytes:
    return tagged_hash(_TAG, previous, state_digest, indices_digest(indices_block), steps_digest(intermediate))


def final_message(plan_digest: bytes, chain_head: bytes, final_weights_digest: bytes,
                  num_checkpoints: int, num_steps: int) -> bytes:
    """The bytes the trainer signs when the run ends."""
    return (plan_digest + chain_head + final_weights_digest
            + num_checkpoints.to_bytes(8, "little") + num_steps.to_bytes(8, "little"))
