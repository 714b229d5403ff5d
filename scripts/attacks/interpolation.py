"""(a) Infinitesimal update / interpolation (Fang et al., EuroS&P 2023).

Checkpoints are interpolated from the seeded initial model to the stolen weights ``W`` in
equal steps; no training happens at all. Two flavours:

* ``lr=None``: the plan keeps the task's normal learning rate (the steps look like training);
* ``lr=1e-8``: the plan commits a learning rate of about zero, so an honest replay of any
  segment barely moves, and a verifier with a loose *absolute* threshold accepts the tiny
  interpolated steps (the attack Fang et al. describe).

Everything else is made to look right: init from the seed, committed batch order, LR per
checkpoint, SGD momentum buffers consistent with a linear trajectory, per-step RNG state.
"""

from __future__ import annotations

import os
from pathlib import Path

from scripts.attacks.common import (
    Forgery,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    interpolate,
    linear_momentum,
    make_state,
    seeded_weights,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, lr: float | None = None) -> Forgery:
    sk = as_key(key)
    changes = {} if lr is None else {"lr_schedule": {"kind": "constant", "lr": float(lr)}}
    plan = attacker_plan(victim.plan, sk, seed=seed, **changes)
    w0, w = seeded_weights(plan), victim.weights
    n = plan.num_checkpoints - 1
    states = [make_state(plan, 0, w0, None)]
    from pol.schedule import lr_at

    for i in range(1, n + 1):
        step, prev = plan.checkpoint_step(i), plan.checkpoint_step(i - 1)
        a, b = interpolate(w0, w, (i - 1) / n), (interpolate(w0, w, i / n) if i < n else w)
        states.append(make_state(plan, step, b, linear_momentum(plan, a, b, step - prev, lr_at(plan.lr_schedule, step - 1))))
    name = "interpolation" if lr is None else "interpolation-lr0"
    path = write(out, plan, states, committed_indices(plan), sk)
    return Forgery(name, Path(path), {"replay"}, w, info={"lr": lr_at(plan.lr_schedule, 0)})
