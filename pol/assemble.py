"""Build a signed proof from explicit checkpoint states.

The recorder produces proofs from a live training loop; this module produces the same file
from states already in hand. Uses: converting a full proof into a compact one, importing a
legacy proof, and (in tests and ``scripts/attacks``) forging proofs the way an attacker who
holds its own key would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol import chain
from pol.keys import sign
from pol.plan import Plan, utc_now
from pol.proof_file import (
    FULL,
    SEEDED,
    WITHOUT_OPTIMIZER_STATE,
    ProofReader,
    ProofWriter,
)
from pol.state import State
from pol.writer import BackgroundChainWriter

PLAN_DOMAIN = b"pol-plan-sig-v1"
FINAL_DOMAIN = b"pol-final-sig-v1"


def open_writer(path: str | os.PathLike[str], plan: Plan, key: SigningKey, *, codec: str = "delta-zstd",
                keyframe_every: int = 50, anchor_every: int | None = None,
                overwrite: bool = False) -> tuple[ProofWriter, BackgroundChainWriter]:
    """Create the file, sign the plan, and return the writer with its chain builder."""
    plan_bytes = plan.to_bytes()
    writer = ProofWriter(path, plan=plan, plan_signature=sign(key, PLAN_DOMAIN, plan_bytes),
                         public_key=bytes(key.verify_key), codec=codec,
                         keyframe_every=keyframe_every, mode="compact" if anchor_every else "full",
                         overwrite=overwrite)
    return writer, BackgroundChainWriter(writer, plan.digest(), storage_rule(plan.num_checkpoints, anchor_every),
                                         step_digests=plan.step_digests)


def storage_rule(num_checkpoints: int, anchor_every: int | None) -> Callable[[int], str | None]:
    """Which checkpoints a proof stores, and how (a ``store_as`` value, or None).

    Full proofs store every checkpoint whole. Compact proofs store what replay cannot
    recompute cheaply: checkpoint 0 coded against the seeded model, every ``anchor_every``-th
    checkpoint whole, and the last one without optimizer state (no replay starts there).
    """
    last = num_checkpoints - 1

    def rule(i: int) -> str | None:
        if not anchor_every:
            return FULL
        if i == last and i > 0:
            return WITHOUT_OPTIMIZER_STATE
        if i == 0:
            return SEEDED
        return FULL if i % anchor_every == 0 else None

    return rule


def finish(writer: ProofWriter, chain_writer: BackgroundChainWriter, plan: Plan, key: SigningKey,
           num_steps: int) -> None:
    """Drain the chain builder and sign (plan digest, chain head, final weights digest)."""
    chain_writer.shutdown()
    head = chain_writer.head
    if head is None:
        raise RuntimeError("no checkpoint was written")
    fwd = chain_writer.last_weights_digest()
    message = chain.final_message(plan.digest(), head, fwd, chain_writer.count, num_steps)
    writer.finish(final_signature=sign(key, FINAL_DOMAIN, message), chain_head=head, final_weights_digest=fwd,
                  num_checkpoints=chain_writer.count, num_steps=num_steps, finished_at=utc_now())


def assemble_proof(path: str | os.PathLike[str], plan: Plan, states: Iterable[State], indices: np.ndarray,
                   key: SigningKey, step_digests: Sequence[bytes] | None = None, **writer_options: Any) -> None:
    """Write a complete, signed proof: ``states[i]`` is checkpoint ``i`` (at ``plan.checkpoint_step(i)``).

    When the plan records per-step digests, ``step_digests[t]`` is the state digest after step
    ``t`` (row 0: the initial state); only the rows between checkpoints are used (a checkpoint's
    own digest is computed from its state).
    """
    if plan.step_digests and (step_digests is None or len(step_digests) < plan.num_steps + 1):
        raise ValueError("this plan records per-step digests: pass step_digests (one per step, plus the initial state)")
    writer, chain_writer = open_writer(path, plan, key, **writer_options)
    try:
        previous = 0
        for i, state in enumerate(states):
            step = plan.checkpoint_step(i)
            if plan.step_digests and step_digests is not None:
                for t in range(previous + 1, step):
                    chain_writer.submit_step_digest(step_digests[t])
            chain_writer.submit(i, step, state, np.asarray(indices[previous:step], dtype=np.int64))
            previous = step
        finish(writer, chain_writer, plan, key, previous)
    finally:
        writer.close()


def read_step_digests(reader: ProofReader) -> list[bytes] | None:
    return list(reader.step_state_digests) if reader.step_state_digests is not None else None


def read_states(reader: ProofReader) -> list[State]:
    """All stored checkpoint states of a full proof, in order (copies)."""
    return [{k: v.copy() for k, v in reader.checkpoint_state(i).items()} for i in reader.stored_checkpoints]
