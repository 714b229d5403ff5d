"""(i) Tolerance drift: honest training, nudged toward the stolen weights within the tolerance.

Every segment is trained honestly from the recorded start, then the recorded end is moved
toward ``W`` by ``alpha`` times the segment's honest update norm (``alpha`` just below the
tolerance's ``max_distance``). Each segment's relative replay error is then ``alpha``: a
verifier in *tolerance* mode (cross-device verification) accepts every segment, while the
drift accumulates over the run. Exact (bitwise) replay rejects any replayed segment. The final
checkpoint is where the drift got to (it claims those weights, not ``W`` itself);
``info["closer_to_W"]`` is the share of the honest final's distance to ``W`` that the drift removed.
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
    model_weights,
    nudged_toward,
    seeded_weights,
    task_data,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, alpha: float = 0.045) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    w = victim.weights
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    honest_end = None
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(nudged_toward(states[j], trainer.segment(states[j], s0, indices[s0:s1]), w, alpha))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    final = model_weights(states[-1])
    # How far an honest run of the same plan ends from W, for comparison.
    h = seeded_weights(plan)
    honest_states = [make_state(plan, 0, h, None)]
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        honest_states.append(trainer.segment(honest_states[j], s0, indices[s0:s1]))
    honest_end = model_weights(honest_states[-1])
    d = lambda a: float(np.sqrt(sum(float(np.sum((a[k].astype(np.float64) - w[k]) ** 2)) for k in w if w[k].dtype.kind == "f")))  # noqa: E731
    return Forgery("tolerance-drift", Path(path), {"replay"}, final, trained_steps=trainer.steps_run,
                   info={"alpha": alpha, "final_distance_to_W": d(final), "honest_distance_to_W": d(honest_end),
                         "closer_to_W": 1.0 - d(final) / max(d(honest_end), 1e-30)})
