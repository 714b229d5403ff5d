"""Each node's final weights, committed and bound to its signed chain (``pol split train --commit``).

At the end of a run every node commits to the ``model/`` float tensors of its last checkpoint
(:func:`certify.commitment.commit_final_weights`, Pedersen vector commitments with fresh secret
blindings) under a :class:`~certify.commitment.ChainBinding` read back from its own finished proof:
``(plan digest, rank, last checkpoint, signed chain head, that checkpoint's state digest, signed
final-weights digest)``. It writes:

* ``RUN/node<r>.commitment.json``: the commitment (public; canonical JSON), and
* ``RUN/openings/node<r>.opening.json``: its secret blindings (file mode 0600; on a real
  deployment this file stays on the node's host). With them the node can prove it knows the
  opening (:func:`certify.commitment.prove_knowledge`) to a reader without the weights.

An **auditor** who holds the node's proof (hence its final weights) opens the commitment with
:func:`audit_node_commitment` / ``pol split check-commitments RUN``: the proof's final signature
verifies under its signer key, the last checkpoint hashes to the chain's state digest and its
weights to the signed final-weights digest, and the commitment is bound to exactly that binding
and opens to exactly those weights (quantised at the zk parameters' resolution).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pol.hashing import canonical_json, state_digest, weights_digest

from certify.commitment import ChainBinding, FinalWeightsCommitment, commit_final_weights, verify_final_weights

OPENINGS_DIR = "openings"


def commitment_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / f"node{rank}.commitment.json"


def opening_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / OPENINGS_DIR / f"node{rank}.opening.json"


def node_binding(reader: Any) -> ChainBinding:
    """Where a finished node proof's final weights sit in its signed chain."""
    if reader.final is None:
        raise ValueError(f"{reader.path} is unfinished: no signed final weights to bind to")
    last = reader.num_checkpoints - 1
    return ChainBinding(reader.plan_digest, reader.rank, last, reader.final["chain_head"], reader.state_digests[last],
                        reader.final["final_weights_digest"])


def node_final_state(reader: Any) -> dict[str, np.ndarray]:
    return reader.checkpoint_state(reader.num_checkpoints - 1)


def model_tensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from zk.link import model_tensors as select

    return select(state)


def commit_node(proof: str | Path, run_dir: str | Path) -> tuple[Path, Path]:
    """The node's side, after its proof is finished: write its commitment and keep the opening."""
    from pol.split.proof import NodeProofReader

    with NodeProofReader(proof) as reader:
        binding, state, rank = node_binding(reader), node_final_state(reader), reader.rank
    fwc, blindings = commit_final_weights(model_tensors(state), binding)
    out = commitment_path(run_dir, rank)
    _write(out, canonical_json(fwc.to_json()), private=False)
    opening = opening_path(run_dir, rank)
    opening.parent.mkdir(parents=True, exist_ok=True)
    _write(opening, canonical_json({"schema": "pol-final-weights-opening-v1", "rank": rank,
                                    "commitment": fwc.digest().hex(), "blindings": [hex(b) for b in blindings]}),
           private=True)
    return out, opening


def _write(path: Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def load_commitment(path: str | Path) -> FinalWeightsCommitment:
    """Read a (untrusted) commitment file: strict JSON, bounded size (InputError subclasses on bad input)."""
    from pol.smallfiles import JSON_FILE_BYTES, read_small_file

    from verifier import untrusted_json as uj

    raw = read_small_file(path, JSON_FILE_BYTES, "weights commitment")
    try:
        return FinalWeightsCommitment.loads(raw)
    except uj.DocumentError as exc:
        from pol.errors import InputError

        raise InputError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class CommitmentAudit:
    """The outcome of opening one node's commitment against its proof."""

    rank: int
    opened: bool
    reason: str
    clipped: int = 0


def audit_node_commitment(proof: Any, fwc: FinalWeightsCommitment) -> CommitmentAudit:
    """The auditor's side: does ``fwc`` open to the final weights of the signed chain in ``proof``
    (a path, or an open :class:`~pol.split.proof.NodeProofReader`)?"""
    from pol.split.proof import NodeProofReader

    if isinstance(proof, NodeProofReader):
        return _audit(proof, fwc)
    with NodeProofReader(proof) as reader:
        return _audit(reader, fwc)


def _audit(reader: Any, fwc: FinalWeightsCommitment) -> CommitmentAudit:
    from pol.errors import BadSignatureError
    from pol.keys import verify_signature
    from pol.split.node_state import node_weights
    from pol.split.proof import FINAL_SIGNATURE_DOMAIN, final_message
    from zk import ProofRejected

    rank = reader.rank
    if reader.final is None or reader.final_signature is None:
        return CommitmentAudit(rank, False, "the node's proof is unfinished: no signed final weights")
    binding = node_binding(reader)
    message = final_message(reader.plan_digest, rank, binding.chain_head, binding.weights_digest,
                            reader.final["num_checkpoints"], reader.final["num_steps"])
    try:
        verify_signature(reader.signer_public_key, FINAL_SIGNATURE_DOMAIN, message, reader.final_signature)
    except BadSignatureError:
        return CommitmentAudit(rank, False, "the proof's final signature does not verify: the chain is not signed")
    if reader.chain_digests[-1] != binding.chain_head:
        return CommitmentAudit(rank, False, "the signed chain head is not the chain's last link")
    state = node_final_state(reader)
    if state_digest(state) != binding.state_digest:
        return CommitmentAudit(rank, False, "the last checkpoint does not hash to the chain's state digest")
    if weights_digest(node_weights(state)) != binding.weights_digest:
        return CommitmentAudit(rank, False, "the last checkpoint's weights do not hash to the signed final-weights digest")
    try:
        clipped = verify_final_weights(model_tensors(state), fwc, binding)
    except ProofRejected as exc:
        return CommitmentAudit(rank, False, f"the commitment does not open to the chain's final weights: {exc}")
    return CommitmentAudit(rank, True, f"opens to the final weights of checkpoint {binding.checkpoint} "
                                       f"(chain head {binding.chain_head.hex()[:16]}…)", clipped)
