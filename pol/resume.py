"""Continue an interrupted recording (``pol train --resume``).

A run that dies (killed, Ctrl-C, disk full) leaves ``<out>.partial`` (:mod:`pol.partial`): the
signed plan and every checkpoint flushed so far. :func:`resume`

1. reads it like any proof (sandboxed, layout checked), checks that the key is the plan's signer
   and that the plan signature verifies;
2. picks the last checkpoint a run can restart from: stored whole (with its optimizer state),
   hashing to its committed digest, with every chain link up to it recomputing;
3. writes that history to a new working file (the committed digests and links, the stored
   checkpoints re-coded), which then replaces the partial proof, and continues: the remaining
   steps are the committed step run from that checkpoint by :class:`pol.replay.Replayer` (the code
   the verifier replays with), on the recorded stack (same torch, device, thread count...);
4. signs the final message and renames the finished proof to ``<out>``.

Every step is a function of the plan (seeded batch order, per-step seeds, the committed learning
rate and step), so the continuation computes bitwise what the uninterrupted run would have
(``tests/pol/test_resume.py`` kills runs at random moments, resumes and verifies). Resuming a
run whose writer was killed mid-checkpoint restarts from the checkpoint before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pol import chain
from pol.assemble import PLAN_DOMAIN, finish, storage_rule
from pol.errors import BadSignatureError, InputError, ProofFormatError
from pol.keys import fingerprint, load_signing_key, verify_signature
from pol.partial import OutputSlot
from pol.plan import Plan
from pol.proof_file import ProofReader, ProofWriter
from pol.state import State
from pol.writer import BackgroundChainWriter, write_estimate


def resume(out: str | os.PathLike[str], key: str | os.PathLike[str], *, model_spec: str | None = None,
           data_spec: str | None = None, loss_spec: str | None = None, device: str = "auto",
           overwrite: bool = False, keyframe_every: int = 50,
           on_step: Callable[[int], None] | None = None) -> tuple[Plan, int]:
    """Finish the interrupted recording of ``out``; returns (plan, the step it restarted from).

    ``model_spec``/``data_spec``/``loss_spec`` name user code the plan refers to (built-in tasks
    need none): a proof never names code to import. ``on_step(t)`` is called after each step.
    """
    signing_key = load_signing_key(key)
    slot = OutputSlot(out, overwrite=overwrite, resume=True)
    writer: ProofWriter | None = None
    try:
        with ProofReader(slot.partial, model_spec=model_spec) as old:
            plan = old.plan
            _check_signer(old, bytes(signing_key.verify_key))
            if old.final is not None:  # finished, but killed before the rename
                slot.commit_partial()
                return plan, plan.num_steps
            env = _environment(plan, device)
            from pol.tasks import resolve_spec

            model = resolve_spec(plan.model.get("spec"), model_spec, "model")
            old.model_spec = model
            restart = restart_point(old)
            writer = ProofWriter(out, plan=plan, plan_signature=old.plan_signature, public_key=old.signer_public_key,
                                 codec=old.codec, keyframe_every=keyframe_every, mode=old.mode, slot=slot)
            rule = storage_rule(plan.num_checkpoints, plan.extra.get("compact_anchor_every") if old.mode == "compact" else None)
            state = _copy_history(old, writer, rule, restart)
            head = old.chain_digests[restart]
        slot.adopt()  # the continuation (history so far, flushed) replaces the interrupted file
        chain_writer = BackgroundChainWriter(writer, plan.digest(), rule, step_digests=plan.step_digests)
        chain_writer.resume_at(head, restart + 1, state)
        start = plan.checkpoint_step(restart)
        try:
            _continue(plan, state, restart, chain_writer, env, model, data_spec, loss_spec, on_step)
            finish(writer, chain_writer, plan, signing_key, plan.num_steps)
        finally:
            chain_writer.shutdown()
        return plan, start
    finally:
        if writer is not None:
            writer.close()  # renames the proof to `out` when finished; else a partial proof stays
        else:
            slot.release()


def _check_signer(old: ProofReader, public_key: bytes) -> None:
    if public_key != old.signer_public_key or old.plan.signer != old.signer_public_key.hex():
        raise InputError(f"resume with the key that signed the plan ({fingerprint(old.signer_public_key)}), "
                         f"not {fingerprint(public_key)}")
    try:
        verify_signature(old.signer_public_key, PLAN_DOMAIN, old.plan_bytes, old.plan_signature)
    except BadSignatureError:
        raise InputError(f"{old.path}: the plan signature does not verify; this is not a resumable recording") from None


def restart_point(old: ProofReader) -> int:
    """The last checkpoint stored whole whose state hashes to its committed digest and whose chain
    links (and all before) recompute; a checkpoint torn by the kill is skipped."""
    steps, per_step = old.checkpoint_steps, old.step_state_digests
    head = chain.genesis(old.plan_digest, old.state_digests[0])
    valid = 1 if head == old.chain_digests[0] else 0
    while valid and valid < old.num_checkpoints:
        i = valid
        start, stop = int(steps[i - 1]), int(steps[i])
        if stop != old.plan.checkpoint_step(i):
            break
        head = chain.link(head, old.state_digests[i], old.indices(start, stop),
                          per_step[start + 1:stop] if per_step is not None else [])
        if head != old.chain_digests[i]:
            break
        valid += 1
    for i in sorted(old.stored_checkpoints, reverse=True):
        if i < valid and old.is_complete(i) and _hashes(old, i):
            return i
    raise InputError(f"{old.path} holds no checkpoint a run can restart from (the run died before its first one "
                     "was flushed); start over with --force")


def _hashes(old: ProofReader, i: int) -> bool:
    try:
        return old.stored_state_digest(i) == old.state_digests[i]
    except ProofFormatError:  # torn or damaged: not a place to restart from
        return False


def _copy_history(old: ProofReader, writer: ProofWriter, rule: Callable[[int], str | None], last: int) -> State:
    """Checkpoints 0..last of the partial proof into the new file; returns checkpoint ``last``'s state."""
    steps, per_step = old.checkpoint_steps, old.step_state_digests
    state: State = {}
    for i in range(last + 1):
        lo, hi = (int(steps[i - 1]) if i else 0), int(steps[i])
        block = old.indices(lo, hi)
        store_as = rule(i)
        state = {k: v.copy() for k, v in old.checkpoint_state(i).items()} if store_as is not None or i == last else {}
        rows = None if per_step is None else (list(per_step[lo + 1:hi + 1]) if i else [per_step[0]])
        writer.reserve(write_estimate(state if store_as is not None else {}, block, len(rows or []) + 1))
        writer.append_indices(block)
        writer.append_chain(hi, old.chain_digests[i], old.state_digests[i], rows)
        if store_as is not None:
            writer.store_checkpoint(i, hi, state, store_as)
    writer.flush()
    return state


def _environment(plan: Plan, device: str) -> Any:
    """The recorded stack, reproduced in this process (or an InputError naming what differs)."""
    from pol.envinfo import apply_in_process, pick_device, reproduction

    recorded = str(plan.environment.get("device_type", "cpu"))
    dev = pick_device(recorded if device == "auto" else device)
    rep = reproduction(plan.environment, dev)
    if not rep.possible:
        raise InputError("this machine cannot continue the run bitwise (" + "; ".join(rep.blockers) + "); resume "
                         "on the stack that recorded it")
    if rep.needs_subprocess:
        raise InputError("resume with " + " ".join(f"{k}={v}" for k, v in rep.env.items()) + " set, as recorded")
    apply_in_process(rep)
    return dev


def _continue(plan: Plan, state: State, restart: int, chain_writer: BackgroundChainWriter, device: str,
              model_spec: str, data_spec: str | None, loss_spec: str | None,
              on_step: Callable[[int], None] | None) -> None:
    from pol.datacommit import data_root
    from pol.replay import Replayer
    from pol.sampler import BatchSchedule
    from pol.tasks import load_data, resolve_spec

    data = load_data(resolve_spec(plan.data.get("spec"), data_spec, "data"), plan.data.get("kwargs") or {}).train
    if len(data) != plan.data["num_samples"] or data_root(data).hex() != plan.data["merkle_root"]:
        raise InputError("the data set is not the one the plan commits (Merkle root differs): name the same data")
    replayer = Replayer(plan, data, device, model_spec, loss_spec)
    schedule = BatchSchedule(plan.run_seed, len(data), plan.samples_per_step)

    def step_done(t: int, s: State) -> None:
        if plan.step_digests:
            chain_writer.submit_step(s)
        if on_step is not None:
            on_step(t)

    for i in range(restart + 1, plan.num_checkpoints):
        lo, hi = plan.checkpoint_step(i - 1), plan.checkpoint_step(i)
        block = schedule.block(lo, hi)
        state = replayer.run(state, lo, block, step_done)
        if on_step is not None:
            on_step(hi)
        chain_writer.submit(i, hi, state, np.asarray(block, dtype=np.int64))
