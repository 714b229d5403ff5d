"""Forged single steps: honest training in which a few steps' results are nudged toward ``W``.

The thinnest forgery a proof with per-step digests admits. The attacker trains honestly from the
seeded init; after each chosen step ``t`` it moves the weights toward the stolen ``W`` by
``alpha`` times that step's honest update norm, commits the nudged state as the state after
``t + 1`` steps, and trains on honestly from it. Every other step replays bitwise from its
committed start (the attacker holds every committed state), so exactly the chosen steps are
forged: replaying step ``t`` from the committed state after ``t`` steps does not give the
committed digest after ``t + 1``.

* ``spread-thin``: ``fraction`` of all steps (default 10%), drawn uniformly with the attacker's seed;
* ``spread-thin-segments``: one step in each of ``fraction`` of the segments (10% of the segments
  forged, 1% of the steps at k = 10): a forgery counted in segments is k times thinner in steps;
* ``single-forged-step``: one step in the middle of the middle segment (neither end of a segment,
  so no checkpoint differs from an honest run's by more than one step's nudge).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pol.hashing import state_digest
from scripts.attacks.common import (
    Forgery,
    Trainer,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    make_state,
    model_weights,
    nudged_toward,
    seeded_weights,
    task_data,
    write,
)


def chosen_steps(plan: Any, where: str, fraction: float, seed: int) -> list[int]:
    """The steps whose results the forger nudges."""
    n, total = plan.num_checkpoints - 1, plan.num_steps
    rng = np.random.default_rng(seed)
    if where == "spread":
        return sorted(rng.choice(total, size=max(1, math.ceil(fraction * total)), replace=False).tolist())
    if where == "segments":
        segs = rng.choice(n, size=max(1, math.ceil(fraction * n)), replace=False).tolist()
        return sorted(plan.checkpoint_step(j) + int(rng.integers(plan.checkpoint_step(j + 1) - plan.checkpoint_step(j)))
                      for j in segs)
    if where == "middle":
        j = n // 2
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        return [s0 + (s1 - s0) // 2]
    raise ValueError(f"unknown placement {where!r}")


def forge(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *, where: str = "spread",
          fraction: float = 0.1, alpha: float = 0.5) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    forged = chosen_steps(plan, where, fraction, seed)
    pending = list(forged)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        state, at = states[j], s0
        while pending and pending[0] < s1:
            t = pending.pop(0)
            if t > at:
                state = trainer.segment(state, at, indices[at:t])
            after = nudged_toward(state, trainer.segment(state, t, indices[t:t + 1]), victim.weights, alpha)
            trainer.step_digests[t + 1] = state_digest(after)  # the lie: committed as the state after t + 1
            state, at = after, t + 1
        states.append(state if at == s1 else trainer.segment(state, at, indices[at:s1]))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    name = {"spread": "spread-thin", "segments": "spread-thin-segments", "middle": "single-forged-step"}[where]
    n = plan.num_checkpoints - 1
    segments = sorted({j for j in range(n) for t in forged if plan.checkpoint_step(j) <= t < plan.checkpoint_step(j + 1)})
    return Forgery(name, Path(path), {"replay"}, model_weights(states[-1]), trained_steps=trainer.steps_run,
                   info={"forged_steps": forged, "forged_step_fraction": len(forged) / plan.num_steps,
                         "forged_segments": segments, "forged_fraction": len(segments) / n, "alpha": alpha})
