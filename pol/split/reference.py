"""Single-process reference: the unsplit model trained in one process, with the pipeline's rules.

Written independently of the pipeline engine (no links, no per-stage leaves): the stages are
concatenated into one model, each micro-batch goes forward through all of them and its loss is
back-propagated through the whole graph. What it shares with the pipeline is only what the
plan commits: per-stage initial seeds, the seeded batch order, the micro-batch split, the
per-(stage, step, micro-batch) forward seeds, one optimizer per stage with its schedule, the
loss scaled by 1/m. The pipeline's final stage weights must equal this bitwise
(tests/split/test_split_equivalence.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pol.hashing import derive_seed
from pol.sampler import BatchSchedule
from pol.schedule import lr_at
from pol.split.plan import PipelinePlan
from pol.split.stages import build_stage
from pol.training import loss_function, optimizer_class


def train_reference(plan: PipelinePlan, features: Any, labels: Any, device: str = "cpu") -> dict[str, np.ndarray]:
    """Final weights of every stage, named ``stage<s>.<state_dict key>``."""
    import torch

    stages = [build_stage(st["module"]["spec"], st["module"]["kwargs"], plan.seed, s).to(device)
              for s, st in enumerate(plan.stages)]
    model = torch.nn.Sequential(*stages).train()
    optimizers = [optimizer_class(st["optimizer"]["type"])(stage.parameters(), lr=lr_at(st["lr_schedule"], 0),
                                                             **st["optimizer"]["hparams"])
                  for stage, st in zip(stages, plan.stages)]
    loss_fn = loss_function(plan.loss)
    order = BatchSchedule(plan.seed, int(plan.data["num_samples"]), plan.batch_size)
    m, size = plan.micro_batches, plan.micro_batch_size
    for t in range(plan.num_steps):
        for opt, st in zip(optimizers, plan.stages):
            opt.zero_grad(set_to_none=True)
            opt.param_groups[0]["lr"] = lr_at(st["lr_schedule"], t)
        rows = torch.from_numpy(order.indices(t))
        for j in range(m):
            part = rows[j * size:(j + 1) * size]
            out = features[part].to(device)
            for s, stage in enumerate(stages):
                torch.manual_seed(derive_seed(plan.seed, "split-step", s, t, j))  # torch's own call: the engine's cheaper
                # reseed (CPU generator only) must give the same dropout masks
                out = stage(out)
            (loss_fn(out, labels[part].to(device)) / m).backward()
        for opt in optimizers:
            opt.step()
    return {f"stage{s}.{k}": v.detach().cpu().numpy().copy()
            for s, stage in enumerate(model) for k, v in stage.state_dict().items()}
