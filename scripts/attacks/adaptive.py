"""Adaptive forgeries against the verifier's own rules (issue 11): crafted momentum, environment
claims that would loosen a check, learning-rate spikes that would hide a jump.

* ``zero-compute`` — no training at all. The plan commits a learning rate of 1e-6; checkpoints lie
  on the straight line from (almost) the seeded init to the stolen weights ``W``, and each carries
  an SGD momentum buffer crafted so that replaying its segment (whose gradients barely matter at
  that learning rate) drives the weights to the next checkpoint. Optionally the plan lies about
  the environment (``claim="torch-suffix"``: a torch version no verifier has; ``claim="cuda"``), which
  made an earlier verifier pick tolerance mode and compare weights only. Caught: exact replay
  (every segment's replayed momentum differs from the crafted one recorded); a verifier that cannot
  reproduce the claim refuses to judge; explicit tolerance mode compares the optimizer state.
* ``momentum-jump`` — honest own-seed training, then the last ``m`` segments carried to ``W`` by
  crafted momentum, ``cuda`` claimed. Caught: targeted replay (the moves toward the final weights
  and the optimizer state are the largest; their predecessors, which must produce the crafted
  momentum, are replayed too).
* ``lr-masked-jump`` — honest own-seed training with one segment jumping to ``W`` (then honest
  fine-tuning from ``W``); the committed (table) schedule spikes at that segment so that its
  LR-normalised update is the median one. Caught: the targeted replay also ranks raw updates and
  moves toward the final weights, which divide by nothing the prover chooses.
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
    float_names,
    interpolate,
    linear_momentum,
    make_state,
    model_weights,
    seeded_weights,
    task_data,
    update_norm,
    write,
)

CLAIMS = {
    None: {},
    "torch-suffix": {"torch_suffix": "+forged"},
    "cuda": {"device_type": "cuda", "device_name": "NVIDIA H200"},
}


def claimed_environment(plan: Any, claim: str | None) -> dict[str, Any]:
    env = dict(plan.environment)
    spec = CLAIMS[claim]
    if "torch_suffix" in spec:
        env["torch"] = str(env["torch"]) + spec["torch_suffix"]
    env.update({k: v for k, v in spec.items() if k != "torch_suffix"})
    return env


def driving_momentum(plan: Any, start: dict, end: dict, s0: int, s1: int) -> dict[str, np.ndarray]:
    """SGD momentum buffers that, with gradients negligible, carry the weights ``start -> end`` over
    steps ``s0..s1-1``: ``w_k = w_0 - buf_0 * sum_t lr_t * mu^(t+1)``."""
    mu = float(plan.optimizer["hparams"].get("momentum", 0.0)) or 0.9
    gain = sum(lr_at(plan.lr_schedule, t) * mu ** (t - s0 + 1) for t in range(s0, s1))
    return {k: (-(end[k].astype(np.float64) - start[k]) / gain).astype(np.float32)
            for k in float_names(end) if not k.endswith(("running_mean", "running_var"))}


def zero_compute(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                 claim: str | None = None, lr: float = 1e-6) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed, lr_schedule={"kind": "constant", "lr": lr})
    plan = plan.__class__(**{**_fields(plan), "environment": claimed_environment(plan, claim)})
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    n = plan.num_checkpoints - 1
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    # segment 0 starts from a fresh optimizer (no momentum to craft): 10 steps at lr 1e-6, nearly free
    states.append(trainer.segment(states[0], 0, indices[:plan.checkpoint_step(1)]))
    w1, w = model_weights(states[1]), victim.weights
    for j in range(1, n):  # checkpoint j carries the momentum that drives segment j to the next line point
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        a = model_weights(states[j])
        b = w if j == n - 1 else interpolate(w1, w, j / (n - 1))
        states[j] = {**states[j], **{f"optim/state/{k}/momentum_buffer": v
                                    for k, v in driving_momentum(plan, a, b, s0, s1).items()}}
        states.append(make_state(plan, s1, b, linear_momentum(plan, a, b, s1 - s0, lr)))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    name = "zero-compute" + (f"-{claim}" if claim else "")
    return Forgery(name, Path(path), {"replay"}, w, trained_steps=trainer.steps_run,
                   expect_refusal_in_auto_mode=claim is not None,
                   info={"claim": claim, "lr": lr, "trained_steps": trainer.steps_run})


def momentum_jump(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *, last: int = 5,
                  claim: str | None = "cuda") -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    plan = plan.__class__(**{**_fields(plan), "environment": claimed_environment(plan, claim)})
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    n = plan.num_checkpoints - 1
    last = min(last, n - 1)
    first_forged = n - last
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(first_forged):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    start, w = model_weights(states[first_forged]), victim.weights
    for j in range(first_forged, n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        a = model_weights(states[j])
        b = w if j == n - 1 else interpolate(start, w, (j - first_forged + 1) / last)
        states[j] = {**states[j], **{f"optim/state/{k}/momentum_buffer": v
                                    for k, v in driving_momentum(plan, a, b, s0, s1).items()}}
        states.append(make_state(plan, s1, b, linear_momentum(plan, a, b, s1 - s0, lr_at(plan.lr_schedule, s1 - 1))))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    return Forgery("momentum-jump" + (f"-{claim}" if claim else ""), Path(path), {"replay"}, w,
                   trained_steps=trainer.steps_run, expect_refusal_in_auto_mode=claim is not None,
                   info={"forged_segments": list(range(first_forged - 1, n)), "claim": claim})


def lr_masked_jump(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                   segment: int | None = None, fine_tune: bool = True) -> Forgery:
    sk = as_key(key)
    base = attacker_plan(victim.plan, sk, seed=seed)
    n = base.num_checkpoints - 1
    jump = n // 2 if segment is None else segment % n
    indices = committed_indices(base)
    # pass 1 (base schedule): the honest updates up to the jump, to size the spike
    probe = Trainer(base, task_data(base).train)
    states = [make_state(base, 0, seeded_weights(base), None)]
    for j in range(jump):
        s0, s1 = base.checkpoint_step(j), base.checkpoint_step(j + 1)
        states.append(probe.segment(states[j], s0, indices[s0:s1]))
    honest = sorted(update_norm(states[j], states[j + 1]) for j in range(jump)) or [1.0]
    jump_norm = float(np.sqrt(sum(float(np.sum((victim.weights[k].astype(np.float64) - model_weights(states[jump])[k])
                                                 ** 2)) for k in float_names(victim.weights))))
    spike = jump_norm / honest[len(honest) // 2]
    values = [lr_at(base.lr_schedule, t) for t in range(base.num_steps)]
    for t in range(base.checkpoint_step(jump), base.checkpoint_step(jump + 1)):
        values[t] *= spike
    plan = attacker_plan(victim.plan, sk, seed=seed, lr_schedule={"kind": "table", "values": values})
    trainer = Trainer(plan, task_data(plan).train)  # pass 2, the committed table (identical before the jump)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    w = victim.weights
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        if j == jump:
            a = model_weights(states[j])
            states.append(make_state(plan, s1, w, linear_momentum(plan, a, w, s1 - s0, values[s1 - 1])))
        elif j > jump and not fine_tune:
            states.append(make_state(plan, s1, w, None))
        else:
            states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    final = model_weights(states[-1])
    norms = [update_norm(states[j], states[j + 1]) for j in range(n)]
    lrs = [float(np.mean(values[plan.checkpoint_step(j):plan.checkpoint_step(j + 1)])) for j in range(n)]
    normalised = [x / lr for x, lr in zip(norms, lrs)]
    rank = sorted(range(n), key=lambda j: -normalised[j]).index(jump)
    return Forgery("lr-masked-jump", Path(path), {"replay"}, final, trained_steps=probe.steps_run + trainer.steps_run,
                   info={"jump_segment": jump, "spike": spike, "normalised_rank_of_jump": rank})


def _fields(plan: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
