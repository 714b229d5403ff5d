"""Verifier votes on the nodes of a certified pipeline, and re-checking their evidence.

A verifier (``pol split vote RUN --verifier-key v.key --out VOTES/``, one process of its own)
computes the certificate body from the run directory itself (:func:`certify.pipeline_certificate.build_body`),
judges every node with :func:`verifier.split.verify_node` (the node's own proof, its neighbours'
recorded headers, a uniform sample of its segments drawn with the verifier's own randomness) and
signs one vote per node: ``Subject("pipeline-node", certificate digest, rank)``
(:mod:`verifier.vote`). The node keys it checks the proofs against are the ones the certificate
names (what binds them to attested enclaves is the certificate's attestation check).

A rejecting vote carries evidence anyone re-checks (:class:`NodeRechecker`):

* ``replay``, unit ``segment``: segment ``j`` of node ``r`` (its steps, the committed digests of
  checkpoints ``j`` and ``j+1``) does not replay: replaying it from the node's recorded inputs does
  not reproduce the next checkpoint or the digests of the messages the node signed. Node proofs
  commit no per-step digests, so the unit is the segment (``pol dispute`` narrows further);
* ``check``: ``chain``, ``final_signature``, ``data_commitment`` or ``initialization`` of that node
  fails (deterministic, re-run without sampling).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from pol.hashing import state_digest
from verifier.evidence import CHECK, REPLAY, SEGMENT, Evidence, Finding
from verifier.subject import PIPELINE_NODE_SUBJECT, Subject
from verifier.vote import SignedVote, Vote, sign_vote, vote_from_report, write_vote

#: Node checks whose failure is evidence (anyone re-runs them without sampling).
NODE_CHECKS = ("chain", "final_signature", "data_commitment", "initialization")


def node_subject(digest: bytes, rank: int) -> Subject:
    return Subject(PIPELINE_NODE_SUBJECT, digest, rank)


@dataclass
class _Node:
    """One node's proof opened for replay, on its recorded stack (shared by votes and re-checks)."""

    reader: Any
    device: str
    replayer: Any

    @classmethod
    def open(cls, reader: Any, data: str | None = None, device: str = "auto") -> "_Node":
        from verifier.split.api import SplitVerifyOptions, held_data, recorded_stack
        from verifier.split.replay import NodeReplayer

        dev = recorded_stack(reader, device)
        replayer = NodeReplayer(reader, held_data(reader, SplitVerifyOptions(data=data)), dev, {})
        return cls(reader, dev, replayer)

    def segment_evidence(self, segment: int, detail: str = "") -> Evidence | None:
        """Evidence that ``segment`` does not replay, or None when it does (here)."""
        from pol.split.node_state import capture_node

        outcome = self.replayer.replay(segment)
        if outcome.passed:
            return None
        plan, digests = self.reader.plan, self.reader.state_digests
        replayed = state_digest(capture_node(self.replayer.stages, plan.checkpoint_step(segment + 1)))
        return Evidence(REPLAY, self.reader.rank, SEGMENT, segment, plan.checkpoint_step(segment),
                        plan.checkpoint_step(segment + 1), digests[segment], digests[segment + 1], replayed,
                        detail=(detail or outcome.detail)[:500])


def node_evidence(node: _Node, report: Any) -> tuple[Evidence, ...]:
    """Evidence for a rejected node report: failed deterministic checks, failed replayed segments."""
    if report.verdict != "rejected":
        return ()
    out = [Evidence(CHECK, node.reader.rank, check=c.name, detail=c.detail[:500]) for c in report.checks
           if c.passed is False and c.name in NODE_CHECKS]
    if any(c.name == "replay" and c.passed is False for c in report.checks):
        for segment in report.info.get("replayed_segments", [])[:4]:
            ev = node.segment_evidence(int(segment))
            if ev is not None:
                out.append(ev)
    return tuple(out[:16])


@dataclass
class NodeVoteResult:
    rank: int
    path: Path
    verdict: str
    segments: list[int] = field(default_factory=list)


def cast_node_votes(run_dir: str | os.PathLike[str], key: SigningKey, out_dir: str | os.PathLike[str], *,
                    segments: int | None = None, seed: int | None = None, data: str | None = None,
                    device: str = "auto") -> tuple[bytes, list[NodeVoteResult]]:
    """This verifier's votes on every node of the run: (certificate digest, one result per node).
    Votes go to ``OUT/<verifier fingerprint>-node<r>.json``."""
    from pol.hashing import derive_seed
    from pol.keys import fingerprint
    from verifier.sampling import choose_segments
    from verifier.split.api import SplitVerifyOptions, neighbour_headers, open_run, verify_node

    from certify.pipeline_certificate import build_body, certificate_digest

    body = build_body(run_dir)
    digest = certificate_digest(body)
    trusted = {bytes.fromhex(n["public_key"]): f"certificate node {n['rank']}" for n in body["nodes"]}
    _, own_seed = choose_segments(1, 0, seed)    # the verifier's randomness (OS entropy unless --seed)
    me = bytes(key.verify_key)
    results = []
    readers = open_run(run_dir)
    try:
        headers = neighbour_headers(readers)
        for rank in sorted(readers):
            node_seed = derive_seed(own_seed, "pipeline-node-vote", rank) & ((1 << 63) - 1)
            report = verify_node(readers[rank], keys=trusted, received_by_neighbours=headers[rank],
                                 options=SplitVerifyOptions(segments=segments, seed=node_seed, device=device, data=data))
            report.info.setdefault("mode", "exact")
            report.info["segments_uniform"] = len(report.info.get("replayed_segments", []))
            evidence = node_evidence(_Node.open(readers[rank], data, device), report) \
                if report.verdict == "rejected" else ()
            signed = sign_vote(vote_from_report(report, node_subject(digest, rank), me, evidence), key)
            path = Path(out_dir) / f"{fingerprint(me)[:16]}-node{rank}.json"
            write_vote(signed, path)
            results.append(NodeVoteResult(rank, path, report.verdict, list(report.info.get("replayed_segments", []))))
    finally:
        for r in readers.values():
            r.close()
    return digest, results


class NodeRechecker:
    """Re-checks evidence about node ``rank`` of the run in ``run_dir`` (the ``Rechecker`` protocol
    of :mod:`verifier.evidence`): replays only the segment named, from the node's own proof."""

    def __init__(self, run_dir: str | os.PathLike[str], rank: int, *, data: str | None = None, device: str = "auto"):
        self.run_dir, self.rank, self.data, self.device = Path(run_dir), rank, data, device
        self._node: _Node | None = None
        self._reader: Any = None
        self.replayed_steps = 0

    def _open(self) -> _Node:
        if self._node is None:
            from pol.split.proof import NodeProofReader, node_proof_path

            self._reader = NodeProofReader(node_proof_path(self.run_dir, self.rank))
            self._node = _Node.open(self._reader, self.data, self.device)
        return self._node

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def recheck(self, evidence: Evidence) -> Finding:
        if evidence.node != self.rank:
            return Finding(False, f"the evidence names node {evidence.node}, but the subject is node {self.rank}")
        node = self._open()
        if evidence.kind == CHECK:
            return self._recheck_integrity(node, str(evidence.check))
        plan, digests = node.reader.plan, node.reader.state_digests
        j = evidence.index
        if evidence.unit != SEGMENT or j is None or not 0 <= j < plan.num_checkpoints - 1:
            return Finding(False, "node evidence names a segment of the node's proof")
        if (evidence.start_step, evidence.stop_step) != (plan.checkpoint_step(j), plan.checkpoint_step(j + 1)):
            return Finding(False, f"segment {j} does not span steps {evidence.start_step}-{evidence.stop_step}")
        if (evidence.start_digest, evidence.committed) != (digests[j], digests[j + 1]):
            return Finding(False, "the evidence names digests the node's proof does not commit for this segment")
        found = node.segment_evidence(j)
        self.replayed_steps += evidence.stop_step - evidence.start_step
        if found is None:
            return Finding(False, f"node {self.rank}'s segment {j} replays to its committed checkpoint and sent "
                                  "digests here: the evidence is false")
        return Finding(True, f"node {self.rank}'s segment {j} (steps {found.start_step}-{found.stop_step}) does not "
                             f"replay here: {found.detail[:200]}", found.replayed)

    def _recheck_integrity(self, node: _Node, name: str) -> Finding:
        from verifier.split import integrity
        from verifier.split.api import SplitVerifyOptions, held_data
        from verifier.split.replay import data_check, initialization_check

        chain, final_weights = integrity.chain_check(node.reader)
        results = {"chain": chain.passed, "final_signature": integrity.final_signature_check(node.reader,
                                                                                            final_weights).passed,
                   "initialization": initialization_check(node.replayer).passed}
        plan = node.reader.plan
        if self.rank in (plan.data_owner, plan.label_owner):
            results["data_commitment"] = data_check(node.reader, held_data(node.reader,
                                                                           SplitVerifyOptions(data=self.data))).passed
        if results.get(name) is False:
            return Finding(True, f"node {self.rank} fails {name} here too")
        others = [n for n, passed in results.items() if passed is False]
        if others:
            return Finding(True, f"confirmed elsewhere: node {self.rank} fails {', '.join(others)} here")
        return Finding(False, f"node {self.rank} passes {name} here: the evidence is false")


def votes_on(digest: bytes, votes: list[SignedVote]) -> list[SignedVote]:
    """The votes that name this certificate (any node)."""
    return [sv for sv in votes if sv.vote.subject.kind == PIPELINE_NODE_SUBJECT and sv.vote.subject.digest == digest]


def for_node(votes: list[SignedVote], digest: bytes, rank: int) -> list[SignedVote]:
    """The votes a node's tally sees: those on this node of this certificate, and every vote on
    another certificate (the tally lists those as foreign); votes on the certificate's other nodes
    belong to their own tallies."""
    return [sv for sv in votes if sv.vote.subject.digest != digest or sv.vote.subject.node == rank]


__all__ = ["for_node", "NODE_CHECKS", "NodeRechecker", "cast_node_votes", "node_subject", "votes_on", "Vote"]
