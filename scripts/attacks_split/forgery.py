"""After-the-fact forgeries of one node's proof, written by that node with its own key.

:func:`rewrite_node` re-chains and re-signs a node's proof after a change, through the public
writer (:class:`pol.split.proof.NodeProofWriter`): whatever the verifier then rejects, it rejects
on the content, not on a broken file or signature.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pol.split.proof import NodeProofReader, NodeProofWriter, node_proof_path
from pol.split.transcript import TranscriptSegment

State = dict[str, np.ndarray]


def copy_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run_dir, out)
    return out


def read_node(path: str | Path) -> tuple[Any, list[State], list[TranscriptSegment]]:
    """(reader metadata, every checkpoint state, every transcript segment) of a full proof."""
    with NodeProofReader(path) as r:
        states = [{k: v.copy() for k, v in r.checkpoint_state(i).items()} for i in range(r.num_checkpoints)]
        segments = [TranscriptSegment()] + [r.transcript(i) for i in range(1, r.num_checkpoints)]
        meta = {"plan": r.plan, "plan_bytes": r.plan_bytes, "signatures": r.plan_signatures, "rank": r.rank}
    return meta, states, segments


def rewrite_node(path: str | Path, key: Any, *, edit_states: Callable[[list[State]], list[State]] | None = None,
                 edit_segments: Callable[[list[TranscriptSegment]], list[TranscriptSegment]] | None = None,
                 plan_bytes: bytes | None = None, plan_signatures: list[bytes] | None = None) -> None:
    """Rewrite a node's proof in place after the edits, re-chained and signed with ``key``."""
    from pol.plan import utc_now
    from pol.split.plan import PipelinePlan

    meta, states, segments = read_node(path)
    states = edit_states(states) if edit_states else states
    segments = edit_segments(segments) if edit_segments else segments
    raw = plan_bytes if plan_bytes is not None else meta["plan_bytes"]
    plan = PipelinePlan.from_bytes(raw)
    writer = NodeProofWriter(path, plan=plan, plan_bytes=raw, plan_signatures=plan_signatures or meta["signatures"], rank=meta["rank"],
                             key=key, overwrite=True)
    try:
        for i, state in enumerate(states):
            writer.submit(i, plan.checkpoint_step(i), state, segments[i] if i else None)
        writer.finish(plan.num_steps, utc_now())
    finally:
        writer.close()


def interpolation(run_dir: str | Path, out_dir: str | Path, rank: int, key: Any) -> Path:
    """Node ``rank`` keeps its real first and last checkpoints (and its real transcript) and
    replaces every checkpoint in between by the linear interpolation of its weights and
    optimizer state: a node that claims the work of a training it did not do step by step."""
    out = copy_run(run_dir, out_dir)

    def edit(states: list[State]) -> list[State]:
        first, last, n = states[0], states[-1], len(states) - 1
        for i in range(1, n):
            a = i / n
            for name, value in states[i].items():
                if value.dtype == np.float32 and name in last:
                    start = first.get(name, np.zeros_like(value))
                    states[i][name] = ((1 - a) * start + a * last[name]).astype(np.float32)
        return states

    rewrite_node(node_proof_path(out, rank), key, edit_states=edit)
    return out


def resign_with(run_dir: str | Path, out_dir: str | Path, rank: int, other_key: Any) -> Path:
    """Node ``rank``'s proof, unchanged in content, signed by another key (not the plan's):
    the node was replaced, or its proof was taken over by another party."""
    out = copy_run(run_dir, out_dir)
    rewrite_node(node_proof_path(out, rank), other_key)
    return out


def collusion_rewrite(run_dir: str | Path, out_dir: str | Path, sender: int, receiver: int, receiver_key: Any,
                      stash: str | Path) -> Path:
    """The receiver of a poisoning sender (:class:`~scripts.attacks_split.nodes.PhantomDigestNode`)
    colludes after the run: it replaces, in its own record, every activation the sender poisoned
    by the honest one and the sender's signed header for it (the sender hands both over). Both
    proofs then agree on an exchange that never happened."""
    from pol.split.messages import Header

    out = copy_run(run_dir, out_dir)
    honest = dict(np.load(stash))
    with NodeProofReader(node_proof_path(out, sender)) as r:
        signed = {h.key: h.to_bytes() for i in r.transcript_segments for h in r.transcript_headers(i).sent()}

    def edit(segments: list[TranscriptSegment]) -> list[TranscriptSegment]:
        for seg in segments[1:]:
            for j, raw in enumerate(seg.received_headers):
                h = Header.from_bytes(raw)
                name = "_".join(str(v) for v in h.key)
                if h.sender_node == sender and name in honest:
                    seg.received_headers[j] = signed[h.key]
                    seg.received_tensors[j] = honest[name]
        return segments

    rewrite_node(node_proof_path(out, receiver), receiver_key, edit_segments=edit)
    return out
