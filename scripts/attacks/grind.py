"""Forgeries against the choice of what is checked, and against whom a trajectory belongs (issue 11).

* ``ground-fiat-shamir`` — "islands": a compact proof where only a fraction of the segments is
  trained (the rest interpolated toward the stolen weights), with an embedded non-interactive
  response whose chain head the forger re-rolls (changing one fabricated per-step commitment of a
  forged step, which costs a few hashes) until the derived challenge falls on trained segments.
  Caught: the verifier draws its own segments and ignores the embedded response unless its user
  asks for it (then the report names the grinding risk).
* ``victim-seed-continuation`` — the thief copies the victim's published trajectory (its plan seed
  and nonce, every state), trains some more steps from the victim's final state, and signs it all
  with its own key. Caught: the run seed derives from the signer's key, so under the thief's key
  the initial weights and the batch order are not the ones the thief's plan commits (and ownership
  names the copy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from pol import chain
from pol.hashing import state_digest, tagged_hash
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
    model_weights,
    seeded_weights,
    task_data,
    write,
)


def _head(plan: Any, states: list, indices: np.ndarray, steps: list[bytes]) -> bytes:
    digests = [state_digest(s) for s in states]
    head = chain.genesis(plan.digest(), digests[0])
    for i in range(1, len(states)):
        a, b = plan.checkpoint_step(i - 1), plan.checkpoint_step(i)
        head = chain.link(head, digests[i], indices[a:b], steps[a + 1:b])
    return head


def ground_fiat_shamir(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                       islands: float = 0.2, count: int = 2, anchor_every: int = 10,
                       max_tries: int = 200_000) -> Forgery:
    from verifier.challenge import fiat_shamir_choice

    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed, extra={**victim.plan.extra, "compact_anchor_every": anchor_every})
    n = plan.num_checkpoints - 1
    rng = np.random.default_rng(seed)
    trained = set(rng.choice(n, size=max(count, round(islands * n)), replace=False).tolist())
    trainer = Trainer(plan, task_data(plan).train)
    indices = committed_indices(plan)
    w0, w = seeded_weights(plan), victim.weights
    states = [make_state(plan, 0, w0, None)]
    forged_steps: list[int] = []
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        if j in trained:
            states.append(trainer.segment(states[j], s0, indices[s0:s1]))
        else:
            a = model_weights(states[j])
            b = w if j == n - 1 else interpolate(a, w, 1.0 / (n - j))
            states.append(make_state(plan, s1, b, linear_momentum(plan, a, b, s1 - s0, lr_at(plan.lr_schedule, s1 - 1))))
            forged_steps.extend(range(s0 + 1, s1))
    steps = [trainer.step_digests.get(t) or tagged_hash(b"forged-step", t.to_bytes(8, "little"))
             for t in range(plan.num_steps + 1)]
    # Grind: re-roll one fabricated commitment of a forged step until the derived segments are all trained.
    target = forged_steps[0] if forged_steps else plan.num_steps - 1
    tries = 0
    while tries < max_tries:
        steps[target] = hashlib.sha256(b"grind" + tries.to_bytes(8, "little")).digest()
        head = _head(plan, states, indices, steps)
        chosen, _ = fiat_shamir_choice(plan.digest(), head, n, count, plan.num_steps, 0)
        tries += 1
        if set(chosen) <= trained:
            break
    else:
        raise RuntimeError(f"no lucky chain head in {max_tries} tries")
    path = write(out, plan, states, indices, sk, dict(enumerate(steps)), codec="delta-zstd", anchor_every=anchor_every)
    from verifier.challenge import embed_response

    def states_for(reader: Any, wanted: list[int]) -> dict:  # the forger answers with its own states
        return {t: states[t // plan.every] for t in wanted}

    embedded, _ = embed_response(path, count, 0, states_for)
    assert set(embedded) <= trained
    return Forgery("ground-fiat-shamir", Path(path), {"replay"}, w, trained_steps=trainer.steps_run,
                   info={"tries": tries, "embedded_segments": embedded, "trained_segments": sorted(trained),
                         "forged_fraction": 1 - len(trained) / n})


def victim_seed_continuation(victim: Victim, out: str | os.PathLike[str], key: Any, seed: int = 0, *,
                             extra_steps: int | None = None) -> Forgery:
    if victim.states is None or victim.indices is None or victim.step_digests is None:
        raise ValueError("the continuation needs a full victim proof with per-step digests")
    sk = as_key(key)
    vp = victim.plan
    extra_steps = extra_steps or 2 * vp.every
    total = vp.num_steps + extra_steps
    # The thief's plan: the victim's seed and nonce (so the victim's init and order are "its" too), its own key.
    plan = dataclasses.replace(attacker_plan(vp, sk), seed=vp.seed, nonce=vp.nonce, num_steps=total)
    from pol.sampler import BatchSchedule

    order = BatchSchedule(vp.run_seed, int(vp.data["num_samples"]), vp.samples_per_step).block(0, total)
    trainer = Trainer(dataclasses.replace(vp, num_steps=total), task_data(vp).train)  # continues the victim's run
    states = [dict(s) for s in victim.states]
    for j in range(len(states) - 1, plan.num_checkpoints - 1):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        states.append(trainer.segment(states[j], s0, order[s0:s1]))
    steps = {t: d for t, d in enumerate(victim.step_digests)}
    steps.update(trainer.step_digests)
    path = write(out, plan, states, order, sk, steps)
    return Forgery("victim-seed-continuation", Path(path), {"initialization"}, model_weights(states[-1]),
                   trained_steps=trainer.steps_run, info={"copied_steps": vp.num_steps, "own_steps": extra_steps})
