"""One forged step: honest training everywhere except step ``t``, whose result is nudged.

The attacker trains honestly under its own plan, but after step ``t`` adds ``delta`` to one
weight, then continues honestly from the nudged state. Every checkpoint and every per-step
digest the proof commits is the digest of the trajectory it really followed, so exactly one
step in the whole proof does not replay: step ``t`` (state after ``t`` steps -> state after
``t + 1``). It is the smallest forgery a replaying verifier can catch, and the fixture of the
dispute, fraud-proof and quorum tests (``tests/certify``) and of ``scripts/bench_certify.py``;
it is not in ``ATTACKS`` (bench_security's table), whose verdicts it would only repeat.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    seeded_weights,
    task_data,
    write,
)


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, step: int | None = None,
          delta: float = 1e-3) -> Forgery:
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    n = plan.num_checkpoints - 1
    if step is None:
        j = n // 2
        step = plan.checkpoint_step(j) + (plan.checkpoint_step(j + 1) - plan.checkpoint_step(j)) // 2
    if not 0 <= step < plan.num_steps:
        raise ValueError(f"step {step} is not a step of the run (0..{plan.num_steps - 1})")
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    states = [make_state(plan, 0, seeded_weights(plan), None)]
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        if not s0 <= step < s1:
            states.append(trainer.segment(states[j], s0, indices[s0:s1]))
            continue
        honest = trainer.segment(states[j], s0, indices[s0:step + 1])
        name = sorted(k for k, v in honest.items() if k.startswith("model/") and v.dtype.kind == "f")[0]
        nudged = nudge(honest, name, delta)
        trainer.step_digests[step + 1] = state_digest(nudged)
        states.append(nudged if step + 1 == s1 else trainer.segment(nudged, step + 1, indices[step + 1:s1]))
    trainer.step_digests[0] = state_digest(states[0])
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    segment = next(j for j in range(n) if plan.checkpoint_step(j) <= step < plan.checkpoint_step(j + 1))
    return Forgery("one-step", Path(path), {"replay"}, trained_steps=trainer.steps_run,
                   info={"forged_step": step, "forged_segment": segment, "nudged_tensor": name, "delta": delta})


def nudge(state: dict, tensor: str, delta: float) -> dict:
    """The forger's edit: ``delta`` added to the first value of ``tensor`` (a copy)."""
    out = {k: v.copy() for k, v in state.items()}
    flat = out[tensor].reshape(-1)
    flat[0] = flat[0] + np.asarray(delta, dtype=flat.dtype)
    return out


class ForgerOracle:
    """The forger's own trajectory, for a dispute: states replayed from the proof's stored
    checkpoints with the nudge re-applied after the forged step (what the forger trained)."""

    def __init__(self, reader, replayer, info: dict):
        self.reader, self.replayer = reader, replayer
        self.step, self.tensor, self.delta = int(info["forged_step"]), str(info["nudged_tensor"]), float(info["delta"])

    def state_after(self, t: int) -> dict:
        steps = [int(s) for s in self.reader.checkpoint_steps]
        i = max(i for i, s in enumerate(steps) if s <= t and self.reader.is_complete(i))
        a = steps[i]
        state = {k: v.copy() for k, v in self.reader.checkpoint_state(i).items()}
        if a <= self.step < t:
            state = self.replayer.run(state, a, self.reader.indices(a, self.step + 1))
            state, a = nudge(state, self.tensor, self.delta), self.step + 1
        return state if a == t else self.replayer.run(state, a, self.reader.indices(a, t))
