"""(h) Honest run with one forged jump to the stolen weights.

The attacker trains honestly from the seeded init for every segment but one (by default the
last), where the checkpoint jumps to the stolen ``W``. Only that single segment is forged, so a
verifier sampling ``s`` of ``n`` segments uniformly catches it with probability ``s/n``; one that
always replays the largest updates (the jump is the largest by far) catches it every time.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    update_norm,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, segment: int | None = None) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    n = plan.num_checkpoints - 1
    jump = n - 1 if segment is None else segment % n
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        if j == jump:
            start = model_weights(states[j])
            states.append(make_state(plan, s1, victim.weights,
                                     linear_momentum(plan, start, victim.weights, s1 - s0, lr_at(plan.lr_schedule, s1 - 1))))
        else:
            states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    norms = [update_norm(states[j], states[j + 1]) for j in range(n)]
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    return Forgery("single-jump", Path(path), {"replay"}, victim.weights, trained_steps=trainer.steps_run,
                   info={"jump_segment": jump, "jump_is_largest_update": norms[jump] == max(norms),
                         "jump_norm_over_median": norms[jump] / sorted(norms)[len(norms) // 2]})
