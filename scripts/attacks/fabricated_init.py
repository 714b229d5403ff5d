"""(d) Stolen weights behind a fabricated initialization.

The attacker wants an initial model that carries the stolen weights' structure yet passes a
*statistical* initialization check (Jia et al.'s reference verifier runs a KS test of each
layer against the init distribution). ``mode="disguised"`` takes, layer by layer, exactly the
multiset of values the seeded init would have and arranges them in the rank order of the
stolen ``W`` (so every per-layer histogram, mean, variance and KS statistic is *identical* to
the genuine init), then trains honestly from there with the committed plan. Every segment
replays bitwise; only a verifier that recomputes the init from the seed can tell.
``mode="fresh"`` draws the init from the attacker's own RNG with the same default PyTorch
initialization (also statistically indistinguishable).
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
    task_data,
    write,
)


def disguise(stolen: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per layer: the reference's values, placed in the stolen tensor's rank order."""
    out = {}
    for k, ref in reference.items():
        if ref.dtype.kind != "f" or ref.size < 2:
            out[k] = ref.copy()
            continue
        ranks = np.argsort(np.argsort(stolen[k].ravel(), kind="stable"), kind="stable")
        out[k] = np.sort(ref.ravel())[ranks].reshape(ref.shape).astype(ref.dtype)
    return out


def fresh(plan, seed: int) -> dict[str, np.ndarray]:
    import torch

    from pol.tasks import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000_019 + seed)
        model = build_model(plan.model["spec"], plan.model.get("kwargs") or {})
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, mode: str = "disguised") -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    reference = seeded_weights(plan)
    init = disguise(victim.weights, reference) if mode == "disguised" else fresh(plan, seed)
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    states = [make_state(plan, 0, init, None)]
    for j in range(plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, indices[s0:s1]))
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    final = {k[len("model/"):]: v for k, v in states[-1].items() if k.startswith("model/")}
    return Forgery(f"fabricated-init-{mode}", Path(path), {"initialization"}, final, trained_steps=trainer.steps_run,
                   info={"init": init, "reference_init": reference, "mode": mode})
