"""Integrity checks that need no replay: signatures, chain, plan consistency, data, init."""

from __future__ import annotations

from typing import Any

import numpy as np

from pol import chain
from pol.datacommit import data_root
from pol.errors import BadSignatureError, PolError
from pol.hashing import OPTIMIZER_STATE, weights_digest
from pol.keys import TrustedKey, fingerprint, verify_signature
from pol.proof_file import ProofReader
from pol.recorder import FINAL_DOMAIN, PLAN_DOMAIN
from pol.sampler import BatchSchedule
from pol.schedule import lr_at
from pol.state import MODEL, State, model_weights
from verifier.report import Check
from verifier.scan import CheckpointScan, Layout


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


def chain_check(reader: ProofReader) -> Check:
    """Every chain link recomputes from the committed state digests, batch indices and per-step
    digests, and the last one is the signed chain head. (No checkpoint is decoded here: the
    stored checkpoints are checked against their committed digests by :func:`checkpoints_check`.)"""
    n = reader.num_checkpoints
    if n == 0:
        return Check("chain", False, "0 checkpoints", "the proof holds no checkpoints")
    steps = reader.checkpoint_steps
    per_step = reader.step_state_digests
    head = chain.genesis(reader.plan_digest, reader.state_digests[0])
    broken: list[int] = [] if head == reader.chain_digests[0] else [0]
    for i in range(1, n):
        start, stop = int(steps[i - 1]), int(steps[i])
        if not 0 <= start <= stop <= reader.num_recorded_steps:
            broken.append(i)
            continue
        intermediate = per_step[start + 1:stop] if per_step is not None else []
        head = chain.link(head, reader.state_digests[i], reader.indices(start, stop), intermediate)
        if head != reader.chain_digests[i]:
            broken.append(i)
    if reader.final is not None and reader.final["chain_head"] != head:
        broken.append(n)
    if broken:
        return Check("chain", False, f"broken at link {broken[0]}",
                     f"recomputed chain differs from the stored one at {broken[:8]} (edited, reordered or spliced)")
    detail = "per-step state digests chained" if per_step is not None else "checkpoint digests chained"
    return Check("chain", True, f"{n} links intact", detail)


def checkpoints_check(reader: ProofReader, scan: CheckpointScan, model_layout: Layout) -> Check:
    """Every checkpoint the proof promises is stored (full proofs), hashes to its committed digest,
    holds finite values, and has the model's tensors (names, dtypes, shapes), the same optimizer
    state layout as the other checkpoints, and nothing else."""
    problems: list[str] = []
    n = reader.num_checkpoints
    required = range(n) if reader.mode == "full" else [0, n - 1]
    missing = [i for i in required if not reader.has_checkpoint(i)]
    if missing:
        problems.append(f"checkpoint(s) {missing[:6]} promised by the chain are not stored")
    if scan.digest_mismatch:
        problems.append(f"checkpoint(s) {scan.digest_mismatch[:6]} do not hash to the committed state digest")
    if scan.non_finite:
        problems.append(f"checkpoint(s) {scan.non_finite[:6]} hold NaN or infinite values")
    misplaced = [i for i in reader.stored_checkpoints if reader.checkpoint_attrs(i)["step"] != int(reader.checkpoint_steps[i])]
    if misplaced:
        problems.append(f"checkpoint(s) {misplaced[:6]} are stored under another step than the chain says")
    optimizer_layout: Layout | None = None
    for i, layout in sorted(scan.layouts.items()):
        model = {k: v for k, v in layout.items() if k.startswith(MODEL)}
        if model != model_layout:
            diff = sorted(set(model.items()) ^ set(model_layout.items()))
            problems.append(f"checkpoint {i}'s model tensors differ from the model's ({diff[0][0] if diff else '?'})")
        optim = {k: v for k, v in layout.items() if k.startswith(OPTIMIZER_STATE)}
        if i > 0 and optim:
            if optimizer_layout is None:
                optimizer_layout = optim
            elif optim != optimizer_layout:
                problems.append(f"checkpoint {i}'s optimizer state has another layout than checkpoint 1's")
        other = set(layout) - set(model) - set(optim)
        required = _REQUIRED_TENSORS - ({"rng/torch_cpu"} if reader.legacy else set())
        if not required <= other <= _OTHER_TENSORS:
            odd = sorted((other - _OTHER_TENSORS) | (required - other))
            problems.append(f"checkpoint {i} holds unexpected or lacks expected tensors ({odd[:3]})")
    if problems:
        return Check("checkpoints", False, f"{len(problems)} problem(s)", "; ".join(problems[:4]))
    stored = len(reader.stored_checkpoints)
    return Check("checkpoints", True, f"{stored} stored checkpoint(s) rehashed",
                 "every promised checkpoint present, finite, shaped like the model, bound to its digest")


_OTHER_TENSORS = {"optim/lr", "meta/step", "rng/torch_cpu", "rng/torch_cuda"}
_REQUIRED_TENSORS = {"optim/lr", "meta/step", "rng/torch_cpu"}


def plan_consistency_check(reader: ProofReader, scan: CheckpointScan, held_samples: int | None,
                           committed_order: bool = True) -> Check:
    """Counts and steps; with ``committed_order`` (native proofs) also the seeded batch order and the
    committed LR schedule (a legacy proof commits neither). The order is recomputed only when the
    verifier holds as many samples as the plan commits (``held_samples``; else data_commitment fails)."""
    plan = reader.plan
    problems: list[str] = []
    n = reader.num_checkpoints
    if n != plan.num_checkpoints:
        problems.append(f"{n} checkpoints, plan commits to {plan.num_checkpoints}")
    if reader.final is not None and reader.final["num_steps"] != plan.num_steps:
        problems.append(f"{reader.final['num_steps']} steps signed, plan commits to {plan.num_steps}")
    if reader.final is not None and reader.final["num_checkpoints"] != n:
        problems.append(f"{reader.final['num_checkpoints']} checkpoints signed, the chain holds {n}")
    if reader.num_recorded_steps != plan.num_steps:
        problems.append(f"{reader.num_recorded_steps} steps of indices, plan commits to {plan.num_steps}")
    expected_steps = [plan.checkpoint_step(i) for i in range(n)]
    if list(map(int, reader.checkpoint_steps)) != expected_steps:
        problems.append("checkpoint steps do not follow k")
    if not committed_order:
        return _plan_result(problems, plan, "legacy: batch order and LR schedule are not committed; counts checked")
    if held_samples == int(plan.data["num_samples"]):
        try:
            schedule = BatchSchedule(plan.run_seed, int(plan.data["num_samples"]), plan.samples_per_step)
            recorded = reader.indices()
            committed = schedule.block(0, len(recorded))
            wrong = np.nonzero((recorded != committed).any(axis=1))[0] if len(recorded) else []
            if len(wrong):
                problems.append(f"batch indices of step(s) {list(map(int, wrong[:5]))} differ from the committed order")
        except PolError as exc:
            problems.append(str(exc))
    else:
        problems.append("batch order not checked: the verifier's data set has another size than the plan commits")
    lr_bad: list[int] = []
    for i in reader.stored_checkpoints:
        step = int(reader.checkpoint_steps[i])
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
    return Check("plan_consistency", True, f"{plan.num_steps} steps, k={plan.every}, B={plan.samples_per_step}",
                 ok_detail)


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


def expected_initial_state(reader: ProofReader, model_spec: str) -> State:
    """The model part the run seed builds, plus a freshly built optimizer's state (Adagrad, e.g.,
    initialises its accumulators at construction)."""
    from pol import optimizers
    from pol.state import capture, param_names
    from pol.tasks import seeded_model

    plan = reader.plan
    model = seeded_model(model_spec, plan.model.get("kwargs") or {}, plan.run_seed)
    opt = optimizers.build(plan.optimizer, model, lr_at(plan.lr_schedule, 0))
    state = capture(model, opt, 0, param_names(model, opt), lr_at(plan.lr_schedule, 0))
    return {k: v for k, v in state.items() if k.startswith((MODEL, OPTIMIZER_STATE))}


def init_check(reader: ProofReader, expected: State, scan: CheckpointScan) -> Check:
    plan = reader.plan
    if not reader.has_checkpoint(0):
        return Check("initialization", False, "checkpoint 0 missing", "the initial state is not stored")
    state = reader.checkpoint_state(0)
    got = {k: v for k, v in state.items() if k.startswith((MODEL, OPTIMIZER_STATE))}
    want_model = model_weights(expected)
    if weights_digest(want_model) != weights_digest(model_weights(got)):
        diff = sorted(set(want_model) ^ set(model_weights(got))) or \
            [k for k in want_model if not np.array_equal(want_model[k], model_weights(got)[k])]
        return Check("initialization", False, "differs from seed",
                     f"checkpoint 0 differs from the model the run seed builds in {diff[:4]}")
    optim_want = {k: v for k, v in expected.items() if k.startswith(OPTIMIZER_STATE)}
    optim_got = {k: v for k, v in got.items() if k.startswith(OPTIMIZER_STATE)}
    if optim_want.keys() != optim_got.keys() or not all(np.array_equal(optim_want[k], optim_got[k]) for k in optim_want):
        return Check("initialization", False, "optimizer state differs",
                     "checkpoint 0 must hold the state of a freshly built optimizer")
    if 0 in scan.digest_mismatch:
        # A compact proof codes checkpoint 0 against the model this stack seeds, so a stack
        # that initialises differently shows up here rather than as differing weights.
        return Check("initialization", False, "differs from the committed digest",
                     "checkpoint 0 does not hash to its committed digest: this stack seeds a different initial "
                     "model than the prover's, or checkpoint 0 was altered")
    return Check("initialization", True, "bitwise equal to the seeded model",
                 f"run seed derived from seed {plan.seed}, the signer's key and the plan nonce")


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
