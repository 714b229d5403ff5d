"""Integrity checks that need no replay: signatures, chain, plan consistency, data, init."""

from __future__ import annotations

from typing import Any

import numpy as np

from pol import chain
from pol.datacommit import data_root
from pol.errors import BadSignatureError, PolError
from pol.hashing import weights_digest
from pol.keys import TrustedKey, fingerprint, verify_signature
from pol.proof_file import ProofReader
from pol.recorder import FINAL_DOMAIN, PLAN_DOMAIN
from pol.sampler import BatchSchedule
from pol.schedule import lr_at
from pol.state import model_weights
from pol.tasks import seeded_weights
from verifier.report import Check
from verifier.scan import CheckpointScan


def signer_check(reader: ProofReader, trusted: TrustedKey | None) -> Check:
    embedded = reader.signer_public_key
    fpr = fingerprint(embedded)
    if reader.plan.signer != embedded.hex():
        return Check("signer", False, fpr, "the plan names a different signer than the embedded public key")
    if trusted is None:
        return Check("signer", None, f"{fpr} (self-asserted)",
                     "no trusted key given: the proof only names its own key; pass --key KEY.pub or a fingerprint")
    if not trusted.matches(embedded):
        return Check("signer", False, fpr, f"the proof is signed by {fpr}, not by the trusted {trusted.fingerprint}")
    return Check("signer", True, fpr, f"matches {trusted.source}")


def plan_signature_check(reader: ProofReader) -> Check:
    try:
        verify_signature(reader.signer_public_key, PLAN_DOMAIN, reader.plan_bytes, reader.plan_signature)
    except BadSignatureError:
        return Check("plan_signature", False, "invalid", "the plan was changed after signing, or signed by another key")
    return Check("plan_signature", True, "Ed25519 valid", f"plan signed {reader.plan.created_at}")


def final_signature_check(reader: ProofReader) -> Check:
    if reader.final_signature is None or reader.final is None:
        return Check("final_signature", False, "missing", "the run never finished (no final signature): incomplete proof")
    fin = reader.final
    message = chain.final_message(reader.plan_digest, fin["chain_head"], fin["final_weights_digest"],
                                  fin["num_checkpoints"], fin["num_steps"])
    try:
        verify_signature(reader.signer_public_key, FINAL_DOMAIN, message, reader.final_signature)
    except BadSignatureError:
        return Check("final_signature", False, "invalid", "the chain head or final weights digest do not match the signature")
    return Check("final_signature", True, "Ed25519 valid", f"over chain head {fin['chain_head'].hex()[:16]}…")


def chain_check(reader: ProofReader, scan: CheckpointScan) -> Check:
    """Stored checkpoints hash to their state digests; every chain link recomputes."""
    n = reader.num_checkpoints
    if n == 0:
        return Check("chain", False, "0 checkpoints", "the proof holds no checkpoints")
    bad_states = scan.digest_mismatch
    steps = reader.checkpoint_steps
    head = chain.genesis(reader.plan_digest, reader.state_digests[0])
    broken: list[int] = [] if head == reader.chain_digests[0] else [0]
    for i in range(1, n):
        start, stop = int(steps[i - 1]), int(steps[i])
        if not 0 <= start <= stop <= reader.num_recorded_steps:
            broken.append(i)
            continue
        head = chain.link(head, reader.state_digests[i], reader.indices(start, stop))
        if head != reader.chain_digests[i]:
            broken.append(i)
    if reader.final is not None and reader.final["chain_head"] != head:
        broken.append(n)
    if bad_states:
        return Check("chain", False, f"{len(bad_states)} checkpoint(s) differ from their digest",
                     f"checkpoint(s) {bad_states[:8]} do not hash to the committed state digest")
    if broken:
        return Check("chain", False, f"broken at link {broken[0]}",
                     f"recomputed chain differs from the stored one at {broken[:8]} (edited, reordered or spliced)")
    return Check("chain", True, f"{n} links intact", f"{len(reader.stored_checkpoints)} stored checkpoints rehashed")


def plan_consistency_check(reader: ProofReader, scan: CheckpointScan, committed_order: bool = True) -> Check:
    """Counts and steps; with ``committed_order`` (native proofs) also the seeded batch order and the
    committed LR schedule (a legacy proof commits neither)."""
    plan = reader.plan
    problems: list[str] = []
    n = reader.num_checkpoints
    if n != plan.num_checkpoints:
        problems.append(f"{n} checkpoints, plan commits to {plan.num_checkpoints}")
    if reader.final is not None and reader.final["num_steps"] != plan.num_steps:
        problems.append(f"{reader.final['num_steps']} steps signed, plan commits to {plan.num_steps}")
    if reader.num_recorded_steps != plan.num_steps:
        problems.append(f"{reader.num_recorded_steps} steps of indices, plan commits to {plan.num_steps}")
    expected_steps = [plan.checkpoint_step(i) for i in range(n)]
    if list(map(int, reader.checkpoint_steps)) != expected_steps:
        problems.append("checkpoint steps do not follow k")
    if not committed_order:
        return _plan_result(problems, plan, "legacy: batch order and LR schedule are not committed; counts checked")
    try:
        schedule = BatchSchedule(plan.seed, int(plan.data["num_samples"]), plan.batch_size)
        recorded = reader.indices()
        committed = schedule.block(0, len(recorded))
        wrong = np.nonzero((recorded != committed).any(axis=1))[0] if len(recorded) else []
        if len(wrong):
            problems.append(f"batch indices of step(s) {list(map(int, wrong[:5]))} differ from the committed order")
    except PolError as exc:
        problems.append(str(exc))
    lr_bad: list[int] = []
    for i in reader.stored_checkpoints:
        step = int(reader.checkpoint_steps[i]) if i < n else -1
        expected_lr = lr_at(plan.lr_schedule, max(step - 1, 0))
        lr = scan.recorded_lr.get(i)
        if lr is None or not np.isclose(lr, expected_lr, rtol=1e-12, atol=0.0):
            lr_bad.append(i)
        if scan.recorded_step.get(i) != step:
            problems.append(f"checkpoint {i} says step {scan.recorded_step.get(i)}, the chain says {step}")
    if lr_bad:
        problems.append(f"learning rate in checkpoint(s) {lr_bad[:5]} differs from the committed schedule")
    return _plan_result(problems, plan, "indices follow the seeded order; LR follows the committed schedule")


def _plan_result(problems: list[str], plan: Any, ok_detail: str) -> Check:
    if problems:
        return Check("plan_consistency", False, f"{len(problems)} problem(s)", "; ".join(problems[:4]))
    return Check("plan_consistency", True, f"{plan.num_steps} steps, k={plan.every}, B={plan.batch_size}", ok_detail)


def data_check(reader: ProofReader, dataset: Any) -> Check:
    plan = reader.plan
    n = len(dataset)
    if n != plan.data["num_samples"]:
        return Check("data_commitment", False, f"{n} samples held, {plan.data['num_samples']} committed",
                     "the verifier's data set differs from the committed one")
    root = data_root(dataset)
    if root.hex() != plan.data["merkle_root"]:
        return Check("data_commitment", False, f"root {root.hex()[:16]}… ≠ {plan.data['merkle_root'][:16]}…",
                     "the data the verifier holds differs (features, labels or order) from the committed data")
    return Check("data_commitment", True, f"Merkle root over {n} samples matches", root.hex())


def init_check(reader: ProofReader, model_spec: str, scan: CheckpointScan) -> Check:
    plan = reader.plan
    expected = seeded_weights(model_spec, plan.model.get("kwargs") or {}, plan.seed)
    state = reader.checkpoint_state(0)
    got = model_weights(state)
    if weights_digest(expected) != weights_digest(got):
        diff = sorted(set(expected) ^ set(got)) or [k for k in expected if not np.array_equal(expected[k], got[k])]
        return Check("initialization", False, "differs from seed", f"checkpoint 0 differs from the seeded model in {diff[:4]}")
    if scan.has_optimizer_state.get(0, False):
        return Check("initialization", False, "optimizer state present", "checkpoint 0 must hold a fresh optimizer")
    if 0 in scan.digest_mismatch:
        # A compact proof codes checkpoint 0 against the model this stack seeds, so a stack
        # that initialises differently shows up here rather than as differing weights.
        return Check("initialization", False, "differs from the committed digest",
                     "checkpoint 0 does not hash to its committed digest: this stack seeds a different initial "
                     "model than the prover's, or checkpoint 0 was altered")
    return Check("initialization", True, "bitwise equal to the seeded model", f"seed {plan.seed}, spec {model_spec}")


def final_weights_check(reader: ProofReader) -> Check:
    if reader.final is None:
        return Check("final_weights", False, "no final record", "the run never finished")
    last = reader.num_checkpoints - 1
    if not reader.has_checkpoint(last):
        return Check("final_weights", False, "last checkpoint missing", "the final checkpoint is not stored")
    digest = weights_digest(model_weights(reader.checkpoint_state(last)))
    if digest != reader.final["final_weights_digest"]:
        return Check("final_weights", False, "digest mismatch", "the last checkpoint is not the signed final weights")
    return Check("final_weights", True, digest.hex()[:16] + "…", "last checkpoint matches the signed final-weights digest")
