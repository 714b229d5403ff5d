"""(e) Splice: the first half of one honest run, the second half of another.

Both halves are genuine training; the attacker re-chains and re-signs them under the first
run's plan. ``reindex=False`` keeps the second run's recorded batch indices (they follow its
own seed, not the committed one); ``reindex=True`` rewrites them to the committed order so the
plan check passes, at the price of every second-half segment failing replay.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scripts.attacks.common import (
    Forgery,
    Trainer,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    make_state,
    seeded_weights,
    step_rng,
    task_data,
    write,
)


def honest_states(plan, trainer: Trainer | None = None) -> tuple[list, np.ndarray]:
    trainer = trainer or Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    return states, indices


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, other: Victim | None = None,
          reindex: bool = False) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk)
    if victim.states is None or victim.indices is None:
        raise ValueError("the splice needs a full (non-compact) victim proof")
    trained = 0
    if other is None or other.states is None:
        other_plan = attacker_plan(victim.plan, sk, seed=victim.plan.seed + 1 + seed)
        trainer = Trainer(other_plan, task_data(other_plan).train)
        b_states, b_indices = honest_states(other_plan, trainer)
        trained = trainer.steps_run
    else:
        b_states, b_indices = other.states, other.indices
    n = plan.num_checkpoints - 1
    half = n // 2
    cut = plan.checkpoint_step(half)
    states = [dict(s) for s in victim.states[:half + 1]] + [dict(s) for s in b_states[half + 1:]]
    for i, s in enumerate(states[1:], start=1):  # step and RNG fields made to agree with the plan
        s["meta/step"] = np.asarray(plan.checkpoint_step(i), dtype=np.int64)
        s["rng/torch_cpu"] = step_rng(plan, plan.checkpoint_step(i))
    indices = committed_indices(plan) if reindex else np.concatenate([victim.indices[:cut], b_indices[cut:]])
    path = write(out, plan, states, indices, sk)
    expected = {"replay"} if reindex else {"plan_consistency"}
    final = {k[len("model/"):]: v for k, v in states[-1].items() if k.startswith("model/")}
    return Forgery("splice" + ("-reindexed" if reindex else ""), Path(path), expected, final, trained_steps=trained,
                   info={"join_segment": half})
