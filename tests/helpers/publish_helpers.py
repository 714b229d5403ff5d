"""Helpers for the published-weights tests: record a run, forge an interpolation proof."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import pol
from pol.training import loss_function, optimizer_class


def record_run(path: Path, key: Path, *, seed: int = 0, steps: int = 20, every: int = 10,
               model_spec: str = "digits-mlp", model_kwargs: dict[str, Any] | None = None,
               publish_to: Path | None = None) -> Path:
    """Record a small digits run with the public Recorder API; optionally ``rec.publish`` it."""
    data = pol.load_data("digits-mlp")
    loader = torch.utils.data.DataLoader(data.train, batch_size=32)
    loss_fn = loss_function("cross_entropy")
    with pol.Recorder(path, key=key, every=every, seed=seed, model_spec=model_spec, model_kwargs=model_kwargs,
                      data_spec="digits-mlp", steps=steps, overwrite=True) as rec:
        model, opt, loader = rec.attach(
            model=None, optimizer=lambda p: optimizer_class("SGD")(p, lr=0.05, momentum=0.9), data_loader=loader)
        while rec.step < steps:
            for x, y in loader:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
        if publish_to is not None:
            rec.publish(model, publish_to)
    return path


def forge_interpolation(stolen_proof: Path, out: Path, thief_key: Path, *, seed: int = 7) -> Path:
    """A thief's proof for stolen weights: checkpoints interpolated from a fresh seeded init
    to the stolen final weights, over an honest-looking plan, signed with the thief's key."""
    import dataclasses
    import datetime

    from pol.assemble import assemble_proof
    from pol.keys import load_signing_key
    from pol.optimizers import build
    from pol.publish import final_weights
    from pol.sampler import BatchSchedule
    from pol.state import capture, param_names
    from pol.tasks import seeded_model

    with pol.ProofReader(stolen_proof) as r:
        plan, stolen = r.plan, final_weights(r)
        published = datetime.datetime.fromisoformat(r.final["finished_at"])
    key = load_signing_key(thief_key)
    # The thief signs its plan after the stolen weights existed (an hour later: not the same second).
    created = (published + datetime.timedelta(hours=1)).isoformat(timespec="seconds")
    plan = dataclasses.replace(plan, seed=seed, signer=bytes(key.verify_key).hex(), created_at=created,
                               nonce=plan.nonce[::-1])
    model = seeded_model(plan.model["spec"], plan.model.get("kwargs") or {}, plan.run_seed)
    init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    opt = build(plan.optimizer, model, plan.lr_schedule["lr"])
    names = param_names(model, opt)
    n = plan.num_checkpoints - 1
    states = []
    for i in range(n + 1):
        step = plan.checkpoint_step(i)
        with torch.no_grad():
            for k, v in model.state_dict().items():
                w = stolen[k] if i == n else (init[k] + (stolen[k] - init[k]) * (i / n)).astype(init[k].dtype)
                v.copy_(torch.from_numpy(np.asarray(w)))
        state = capture(model, opt, step, names, plan.lr_schedule["lr"])
        if i > 0:
            for name in names:
                state[f"optim/state/{name}/momentum_buffer"] = np.zeros_like(state[f"model/{name}"])
        states.append(state)
    indices = BatchSchedule(plan.run_seed, int(plan.data["num_samples"]), plan.batch_size).block(0, plan.num_steps)
    fabricated = [bytes([t % 256]) * 32 for t in range(plan.num_steps + 1)]  # per-step commitments of its choosing
    assemble_proof(out, plan, states, indices, key, fabricated, codec="raw")
    return out
