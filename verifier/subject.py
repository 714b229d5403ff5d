"""What a vote is about: a *subject digest*, and optionally the node of a pipeline.

For an ordinary (single-process) proof the subject is what its trainer signed at the end of the
run, with the trainer's key::

    subject = tagged_hash("pol-subject-proof-v1", signer public key, final message)
    final message = plan digest | chain head | final weights digest | u64 checkpoints | u64 steps

so two files holding the same signed run (re-coded, re-compressed) are one subject, and any
other run, chain, weights or signer is another. For a split-learning pipeline the subject will be
the pipeline certificate's digest and the vote names a node (docs/CERTIFY.md): the vote format
carries ``node`` for that, ``null`` here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pol import chain
from pol.errors import InputError
from pol.hashing import tagged_hash
from pol.proof_file import ProofReader

PROOF_SUBJECT = "proof"
PIPELINE_NODE_SUBJECT = "pipeline-node"
SUBJECT_KINDS = (PROOF_SUBJECT, PIPELINE_NODE_SUBJECT)


@dataclass(frozen=True)
class Subject:
    kind: str
    digest: bytes
    node: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SUBJECT_KINDS:
            raise ValueError(f"unknown subject kind {self.kind!r}")
        if len(self.digest) != 32:
            raise ValueError("a subject digest is 32 bytes")
        if (self.node is None) != (self.kind == PROOF_SUBJECT):
            raise ValueError("a pipeline-node subject names a node; a proof subject does not")

    def describe(self) -> str:
        where = f", node {self.node}" if self.node is not None else ""
        return f"{self.kind} {self.digest.hex()[:16]}…{where}"


def proof_subject(reader: ProofReader) -> Subject:
    """The subject of a finished proof (raises InputError for an unfinished one)."""
    if reader.final is None:
        raise InputError(f"{reader.path} is unfinished (no final signature): it cannot be the subject of a vote")
    f = reader.final
    message = chain.final_message(reader.plan_digest, f["chain_head"], f["final_weights_digest"],
                                  int(f["num_checkpoints"]), int(f["num_steps"]))
    return Subject(PROOF_SUBJECT, tagged_hash(b"pol-subject-proof-v1", bytes(reader.signer_public_key), message))
