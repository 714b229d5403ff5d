"""The coordinator's gate: the checks a submitted round proof must pass before its update may
enter the aggregate. The third-party verifier (``verifier.workers``) re-runs the same checks.

Checks, in order (the first that fails names the rejection):

``format``     the bytes parse as a ``pol-round-v1`` round proof
``identity``   it names this run (plan digest), this round and the sender's worker id
``signature``  Ed25519 under the key the plan registered for that worker
``start``      it starts from this round's global model (weights digest)
``schedule``   its steps and batch indices are the committed ones (shard, seeded order)
``tensors``    end weights have the global model's names, dtypes and shapes, are finite, and
               hash to the signed ``end_weights_digest``
``replay``     (policy: all, or a sampled share) training the round again from the global
               model on the committed batches gives the signed end state, bitwise

Baseline aggregators (FedAvg, median, trimmed mean, Krum) run what an ordinary federated
server checks: ``format``, ``identity``, ``signature`` and ``tensors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pol.errors import BadSignatureError, short_reason
from pol.hashing import weights_digest
from pol.keys import verify_signature
from pol.workers.local import LocalTrainer, committed_indices
from pol.workers.messages import WorkersFormatError
from pol.workers.plan import FederatedPlan
from pol.workers.roundproof import ROUND_DOMAIN, RoundProof, decode_round_proof

CHECKS = ("format", "identity", "signature", "start", "schedule", "tensors", "replay")
BASELINE_CHECKS = ("format", "identity", "signature", "tensors")


@dataclass(frozen=True)
class Admission:
    worker: int
    accepted: bool
    check: str | None = None          # the failed check
    reason: str = ""
    replayed: bool = False
    proof: RoundProof | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class _Reject(Exception):
    def __init__(self, check: str, reason: str, **evidence: Any):
        super().__init__(reason)
        self.check, self.reason, self.evidence = check, reason, evidence


def _check(ok: bool, check: str, reason: str, **evidence: Any) -> None:
    if not ok:
        raise _Reject(check, reason, **evidence)


class Gate:
    """Judges submissions of one run; ``trainer`` is needed only for the replay check."""

    def __init__(self, plan: FederatedPlan, trainer: LocalTrainer | None = None):
        self.plan, self.trainer, self.run_digest = plan, trainer, plan.digest()

    def judge(self, raw: bytes, worker: int, round_index: int, global_weights: Mapping[str, np.ndarray],
              global_digest: bytes, *, checks: tuple[str, ...] = CHECKS, replay: bool = True) -> Admission:
        proof = None
        try:
            proof = self._parse(raw)
            self._identity(proof, worker, round_index)
            if "signature" in checks:
                self._signature(proof, worker)
            if "start" in checks:
                _check(proof.digest_field("start_weights_digest") == global_digest, "start",
                       "the round did not start from this round's global model",
                       claimed=proof.body["start_weights_digest"], expected=global_digest.hex())
            if "schedule" in checks:
                self._schedule(proof, worker, round_index)
            if "tensors" in checks:
                self._tensors(proof, global_weights)
            replayed = replay and "replay" in checks
            if replayed:
                self._replay(proof, worker, round_index, global_weights)
        except _Reject as rej:
            return Admission(worker, False, rej.check, rej.reason, rej.check == "replay", proof, rej.evidence)
        return Admission(worker, True, None, "", replayed, proof,
                         {"end_weights_digest": proof.body["end_weights_digest"]})

    def _parse(self, raw: bytes) -> RoundProof:
        try:
            return decode_round_proof(raw)
        except WorkersFormatError as exc:
            raise _Reject("format", f"malformed round proof: {exc}") from None

    def _identity(self, proof: RoundProof, worker: int, round_index: int) -> None:
        _check(proof.body["run"] == self.run_digest.hex(), "identity", "the round proof names another run",
               claimed=proof.body["run"])
        _check(proof.worker == worker, "identity", f"worker {worker} sent a round proof of worker {proof.worker}")
        _check(proof.round == round_index, "identity",
               f"a round proof of round {proof.round} was sent in round {round_index}")

    def _signature(self, proof: RoundProof, worker: int) -> None:
        key = bytes.fromhex(self.plan.worker(worker).public_key)
        try:
            verify_signature(key, ROUND_DOMAIN, proof.signed_message(), proof.signature)
        except BadSignatureError:
            raise _Reject("signature", f"the signature does not verify under worker {worker}'s registered key") \
                from None

    def _schedule(self, proof: RoundProof, worker: int, round_index: int) -> None:
        first = round_index * self.plan.local_steps
        _check(proof.body["first_step"] == first and proof.body["steps"] == self.plan.local_steps, "schedule",
               f"steps {proof.body['first_step']}+{proof.body['steps']} are not the committed {first}+"
               f"{self.plan.local_steps}")
        expected = committed_indices(self.plan, worker, round_index)
        claimed = proof.body["indices"]
        ok = len(claimed) == len(expected) and all(
            len(row) == expected.shape[1] and list(row) == exp.tolist() for row, exp in zip(claimed, expected))
        _check(ok, "schedule", "the batch indices are not the committed seeded order over the worker's shard")

    def _tensors(self, proof: RoundProof, global_weights: Mapping[str, np.ndarray]) -> None:
        tensors = proof.tensors
        missing, extra = set(global_weights) - set(tensors), set(tensors) - set(global_weights)
        _check(not missing and not extra, "tensors",
               f"end weights do not name the model's tensors (missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]})")
        for name, ref in global_weights.items():
            t = tensors[name]
            _check(t.dtype == ref.dtype and t.shape == ref.shape, "tensors",
                   f"tensor {name!r} is {t.dtype}{list(t.shape)}, expected {ref.dtype}{list(ref.shape)}")
            _check(t.dtype.kind != "f" or bool(np.isfinite(t).all()), "tensors", f"tensor {name!r} is not finite")
        digest = weights_digest(tensors)
        _check(digest == proof.digest_field("end_weights_digest"), "tensors",
               "the end weights do not hash to the signed end_weights_digest",
               claimed=proof.body["end_weights_digest"], computed=digest.hex())

    def _replay(self, proof: RoundProof, worker: int, round_index: int,
                global_weights: Mapping[str, np.ndarray]) -> None:
        if self.trainer is None:
            raise RuntimeError("the replay check needs a LocalTrainer")
        try:
            result = self.trainer.run(global_weights, worker, round_index, proof.indices)
        except (RuntimeError, ValueError, IndexError) as exc:  # indices were checked; this is a defect
            raise _Reject("replay", f"replay failed: {short_reason(exc)}") from None
        claimed, replayed = proof.body["end_state_digest"], result.end_state_digest.hex()
        _check(replayed == claimed and result.end_weights_digest == proof.digest_field("end_weights_digest"),
               "replay", "replaying the round on the committed batches does not give the signed end state",
               claimed_end_state=claimed, replayed_end_state=replayed,
               claimed_end_weights=proof.body["end_weights_digest"],
               replayed_end_weights=result.end_weights_digest.hex())
