"""(b) Blindfold top-Q (Fang et al., EuroS&P 2023).

The attacker trains genuinely on only ``q`` segments per epoch, boosting their learning rate
(committed as a per-step ``table`` schedule) until each is larger than every interpolated
step, and interpolates everything else toward the stolen ``W``. A verifier that replays only
the top-Q largest updates checks exactly the genuine segments and accepts; a verifier that
samples segments at random hits an interpolated one with probability ``1 - C(g, s)/C(n, s)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from pol.schedule import lr_at
from scripts.attacks.common import (
    Forgery,
    Trainer,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    interpolate,
    linear_momentum,
    make_state,
    seeded_weights,
    task_data,
    update_norm,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, q: int = 1,
          max_boost: float = 64.0) -> Forgery:
    sk = as_key(key)
    base = attacker_plan(victim.plan, sk, seed=seed)
    n = base.num_checkpoints - 1
    spe = max(1, int(base.data["num_samples"]) // base.batch_size)
    per_epoch = max(1, round(spe / base.every))            # segments per epoch
    rng = random.Random(seed)
    genuine: set[int] = set()
    for start in range(0, n - 1, per_epoch):                # never the last segment: it must land on W
        pool = list(range(start, min(start + per_epoch, n - 1)))
        genuine.update(rng.sample(pool, min(q, len(pool))))
    w0, w = seeded_weights(base), victim.weights
    table = [lr_at(base.lr_schedule, t) for t in range(base.num_steps)]
    interp_count = n - len(genuine)
    # Size of one interpolated step if the genuine segments did not move at all.
    target = update_norm({"model/" + k: v for k, v in w0.items()}, {"model/" + k: v for k, v in w.items()}) / interp_count
    data = task_data(base)
    indices = committed_indices(base)
    boosts: dict[int, float] = {}
    states = [None] * (n + 1)
    plan = base
    trainer_steps = 0
    # Two passes: the first finds each genuine segment's boost, the second writes with the final table.
    for final_pass in (False, True):
        plan = attacker_plan(victim.plan, sk, seed=seed, lr_schedule={"kind": "table", "values": table}) \
            if final_pass else base
        trainer = Trainer(plan, data.train)
        states[0] = make_state(plan, 0, w0, None)
        current = dict(w0)
        remaining = interp_count
        norms_genuine, norms_interp = [], []
        for j in range(n):
            s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
            if j in genuine:
                boost = boosts.get(j, 1.0)
                while True:
                    for t in range(s0, s1):
                        table[t] = lr_at(base.lr_schedule, t) * boost
                    plan_j = attacker_plan(victim.plan, sk, seed=seed, lr_schedule={"kind": "table", "values": table})
                    trainer.plan = plan_j
                    trainer.replayer.plan = plan_j
                    end = trainer.segment(states[j], s0, indices[s0:s1])
                    grown = update_norm(states[j], end)
                    if final_pass or grown > 2 * target or boost >= max_boost:
                        break
                    boost *= 2
                boosts[j] = boost
                states[j + 1] = end
                norms_genuine.append(grown)
                current = {k[len("model/"):]: v for k, v in end.items() if k.startswith("model/")}
            else:
                nxt = w if j == n - 1 else interpolate(current, w, 1.0 / remaining)
                remaining -= 1
                lr = table[s1 - 1]
                states[j + 1] = make_state(plan, s1, nxt, linear_momentum(plan, current, nxt, s1 - s0, lr))
                norms_interp.append(update_norm(states[j], states[j + 1]))
                current = nxt
        trainer_steps += trainer.steps_run
    assert plan is not None
    path = write(out, plan, states, indices, sk, trainer.step_digests)  # type: ignore[arg-type]
    top_q = bool(norms_genuine and norms_interp and min(norms_genuine) > max(norms_interp))
    return Forgery("blindfold-top-q", Path(path), {"replay"}, w, trained_steps=trainer_steps,
                   info={"genuine_segments": sorted(genuine), "genuine_are_largest_updates": top_q,
                         "boosts": sorted(set(boosts.values())),
                         "min_genuine_norm": float(np.min(norms_genuine)) if norms_genuine else None,
                         "max_interpolated_norm": float(np.max(norms_interp)) if norms_interp else None})
