"""Forgeries that bend the proof's structure rather than its training (issue 11).

Each starts from the attacker's own honest run and changes what a lax reader would let through:

* ``missing-checkpoint`` — a full proof whose second-to-last checkpoint is not stored (its digest
  stays committed) and whose last segment jumps to the stolen weights: a verifier that skips
  segments it cannot start would never see the jump. Caught: ``checkpoints`` (every checkpoint a
  full proof promises must be stored).
* ``nan-final`` — one final weight is NaN (NaN compares unequal to itself, so a digest-only check
  of the last checkpoint may never look at it). Caught: ``checkpoints`` (finite values).
* ``float16-final`` — the final checkpoint's model tensors stored as float16. Caught:
  ``checkpoints`` (the model's layout: names, dtypes, shapes).
* ``extra-tensor`` — an extra tensor in a middle checkpoint (committed and signed). Caught:
  ``checkpoints`` (layout) and ``replay`` when drawn (a failed segment, never an internal error).
* ``compact-final-jump`` — a compact proof (anchors every K) whose last segment jumps to the
  stolen weights; nothing between the last anchor and the end is stored. Caught: the verifier
  always replays the stretch from the last anchor to the final weights.
* ``skip-batches`` — honest training that skips (trains on other batches than committed) a
  ``fraction`` of the segments. Caught by the uniform draw with its stated probability.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pol.schedule import lr_at
from scripts.attacks.common import (
    Forgery,
    Trainer,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    linear_momentum,
    make_state,
    model_weights,
    seeded_weights,
    task_data,
    write,
)


def _honest(plan: Any, stop_before: int | None = None) -> tuple[Trainer, list, np.ndarray]:
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    n = plan.num_checkpoints - 1
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(n if stop_before is None else stop_before):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    return trainer, states, indices


def _jump_last(plan: Any, states: list, victim: Victim) -> None:
    n = plan.num_checkpoints - 1
    s0, s1 = plan.checkpoint_step(n - 1), plan.checkpoint_step(n)
    a = model_weights(states[n - 1])
    states.append(make_state(plan, s1, victim.weights,
                             linear_momentum(plan, a, victim.weights, s1 - s0, lr_at(plan.lr_schedule, s1 - 1))))


def missing_checkpoint(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0) -> Forgery:
    import h5py

    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    n = plan.num_checkpoints - 1
    trainer, states, indices = _honest(plan, stop_before=n - 1)
    _jump_last(plan, states, victim)
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    with h5py.File(path, "r+") as f:  # the chain still commits its digest; the group is just not there
        del f[f"checkpoints/{n - 1:06d}"]
    return Forgery("missing-checkpoint", Path(path), {"checkpoints"}, victim.weights, trained_steps=trainer.steps_run,
                   info={"missing": n - 1})


def _edit_final(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int, name: str, edit: Any) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    trainer, states, indices = _honest(plan)
    states[-1] = edit(dict(states[-1]))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    return Forgery(name, Path(path), {"checkpoints"}, model_weights(states[-1]), trained_steps=trainer.steps_run)


def nan_final(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0) -> Forgery:
    def edit(state: dict) -> dict:
        name = sorted(k for k in state if k.startswith("model/") and state[k].dtype.kind == "f")[0]
        arr = state[name].copy()
        arr.flat[0] = np.nan
        return {**state, name: arr}

    return _edit_final(victim, out, key, seed, "nan-final", edit)


def float16_final(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0) -> Forgery:
    def edit(state: dict) -> dict:
        return {k: (v.astype(np.float16) if k.startswith("model/") and v.dtype == np.float32 else v)
                for k, v in state.items()}

    return _edit_final(victim, out, key, seed, "float16-final", edit)


def extra_tensor(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    trainer, states, indices = _honest(plan)
    middle = len(states) // 2
    states[middle] = {**states[middle], "model/extra.weight": np.ones(3, np.float32)}
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    return Forgery("extra-tensor", Path(path), {"checkpoints"}, model_weights(states[-1]),
                   trained_steps=trainer.steps_run, info={"checkpoint": middle})


def compact_final_jump(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                       anchor_every: int = 10) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed, extra={**victim.plan.extra, "compact_anchor_every": anchor_every})
    n = plan.num_checkpoints - 1
    trainer, states, indices = _honest(plan, stop_before=n - 1)
    _jump_last(plan, states, victim)
    path = write(out, plan, states, indices, sk, trainer.step_digests, codec="delta-zstd", anchor_every=anchor_every)
    return Forgery("compact-final-jump", Path(path), {"replay"}, victim.weights, trained_steps=trainer.steps_run,
                   info={"anchor_every": anchor_every})


def skip_batches(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                 fraction: float = 0.05) -> Forgery:
    """Train ``fraction`` of the segments on other batches than the committed ones."""
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    n = plan.num_checkpoints - 1
    rng = np.random.default_rng(seed)
    skipped = sorted(rng.choice(n, size=max(1, round(fraction * n)), replace=False).tolist())
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        block = indices[s0:s1] if j not in skipped else np.roll(indices[s0:s1], 1, axis=0)
        states.append(trainer.segment(states[j], s0, block))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    return Forgery("skip-batches", Path(path), {"replay"}, model_weights(states[-1]), trained_steps=trainer.steps_run,
                   info={"skipped_segments": skipped, "forged_fraction": len(skipped) / n})
