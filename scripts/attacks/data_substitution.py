"""(f) Data substitution: honest training on data other than the committed data set.

The attacker changes the labels of a ``fraction`` of the training samples (or, with
``fraction`` given as a count >= 1, of that many samples) and trains honestly on the result.
``commit="real"`` keeps the real data's Merkle root in the plan (replay on the real data then
differs on every segment whose batches touch a changed sample); ``commit="substituted"``
commits the substituted set's root (the data check fails for a verifier holding the real data).
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
    replace_dataset,
    seeded_weights,
    task_data,
    with_data_root,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, fraction: float = 0.1,
          commit: str = "real") -> Forgery:
    if commit not in ("real", "substituted"):
        raise ValueError("commit is 'real' or 'substituted'")
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    data = task_data(plan)
    x, y = data.train.tensors
    rng = np.random.default_rng(seed)
    count = int(fraction) if fraction >= 1 else max(1, round(fraction * len(y)))
    used = np.unique(committed_indices(plan))  # a substitution only matters for samples the run trains on
    changed = rng.choice(used, size=min(count, len(used)), replace=False)
    y2 = y.clone()
    classes = int(y.max()) + 1
    y2[changed] = (y2[changed] + 1 + int(rng.integers(0, classes - 1))) % classes
    substituted = replace_dataset(data.train, y=y2)
    trainer = Trainer(plan, substituted)
    indices = committed_indices(plan)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    touched = sum(bool(np.isin(indices[plan.checkpoint_step(j):plan.checkpoint_step(j + 1)], changed).any())
                  for j in range(plan.num_checkpoints - 1))
    if commit == "substituted":
        plan = with_data_root(plan, substituted)
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    expected = {"replay"} if commit == "real" else {"data_commitment"}
    final = {k[len("model/"):]: v for k, v in states[-1].items() if k.startswith("model/")}
    return Forgery(f"data-substitution-{commit}", Path(path), expected, final, trained_steps=trainer.steps_run,
                   info={"changed_samples": count, "segments_touched": int(touched),
                         "segments": plan.num_checkpoints - 1})
