"""Lying verifiers and bad votes on a pipeline certificate (tests, ``scripts/bench_certify.py``).

* :func:`lying_node_vote`: a Byzantine verifier's validly signed vote on node ``rank`` that
  verifies nothing: ``accept`` ("verified", claiming every segment replayed),
  ``reject-false-evidence`` ("rejected", evidence naming a real segment and the digests the proof
  commits for it, with a made-up replayed digest: only a re-check by replay refutes it),
  ``reject-no-evidence``;
* :func:`forged_vote`: someone else's vote with its verdict flipped (signature no longer valid);
* :func:`foreign_vote`: a validly signed vote on another certificate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from nacl.signing import SigningKey

from certify.node_votes import node_subject
from certify.pipeline_certificate import build_body, certificate_digest
from pol.split.proof import NodeProofReader, node_proof_path
from verifier.evidence import REPLAY, SEGMENT, Evidence
from verifier.vote import SignedVote, Vote, sign_vote

LIES = ("accept", "reject-false-evidence", "reject-no-evidence")


def lying_node_vote(run_dir: str | Path, rank: int, key: SigningKey, lie: str) -> SignedVote:
    if lie not in LIES:
        raise ValueError(f"unknown lie {lie!r}; one of {LIES}")
    digest = certificate_digest(build_body(run_dir))
    with NodeProofReader(node_proof_path(run_dir, rank)) as reader:
        plan, digests = reader.plan, reader.state_digests
    n = plan.num_checkpoints - 1
    evidence: tuple[Evidence, ...] = ()
    if lie == "reject-false-evidence":
        evidence = (Evidence(REPLAY, rank, SEGMENT, 0, plan.checkpoint_step(0), plan.checkpoint_step(1), digests[0],
                             digests[1], hashlib.sha256(b"made up").digest(), detail="trust me"),)
    verdict = "verified" if lie == "accept" else "rejected"
    vote = Vote(node_subject(digest, rank), bytes(key.verify_key), verdict, "exact", n, tuple(range(n)), n, 0, (),
                None, (("replay", verdict == "verified"),), evidence)
    return sign_vote(vote, key)


def forged_vote(signed: SignedVote) -> SignedVote:
    """The same vote with the other verdict, its signature kept (it no longer verifies)."""
    flipped = "rejected" if signed.vote.verdict == "verified" else "verified"
    return SignedVote(dataclasses.replace(signed.vote, verdict=flipped), signed.signature)


def foreign_vote(rank: int, key: SigningKey) -> SignedVote:
    """A validly signed acceptance of node ``rank`` of another certificate."""
    other = hashlib.sha256(b"another pipeline certificate").digest()
    vote = Vote(node_subject(other, rank), bytes(key.verify_key), "verified", "exact", 2, (0, 1), 2, 0, (), None,
                (("replay", True),))
    return sign_vote(vote, key)
