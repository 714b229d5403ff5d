"""The recorder's self-check: replay the first segment before the proof goes any further.

At the first checkpoint the recorder replays steps ``0..k`` itself, exactly as a verifier will
(:class:`pol.replay.Replayer`: a separate model instance, the committed step, the committed
batches and seeds), and compares the state after every step with what the loop produced. A loop
that does anything the plan does not commit (another loss or loss setting, another output, extra
randomness, in-place changes outside ``optimizer.step()``) is stopped there with a
:class:`~pol.errors.PlanError` that names the first step that differs and the likely causes,
instead of signing a proof its own verifier would reject. It costs ``k`` steps once
(``k / num_steps`` of the training; measured in docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pol.errors import PlanError
from pol.hashing import OPTIMIZER_STATE
from pol.plan import Plan
from pol.sampler import BatchSchedule
from pol.state import MODEL, State


class SelfCheck:
    def __init__(self, plan: Plan, dataset: Any, initial: State, device: str, model_spec: str):
        self.plan, self.dataset, self.device, self.model_spec = plan, dataset, device, model_spec
        self._initial = {k: v.copy() for k, v in initial.items()}
        self._end = min(plan.every, plan.num_steps)
        self._digests: dict[int, bytes] = {}
        self.done = False
        self.seconds = 0.0

    def wants(self, step: int) -> bool:
        """Whether the recorder should capture the state after ``step`` for this check."""
        return not self.done and step <= self._end

    def observe(self, step: int, digest: bytes, state: State | None = None) -> None:
        """The digest of the state after ``step``; at the segment's end also the state itself."""
        if self.done or step > self._end:
            return
        self._digests[step] = digest
        if step == self._end:
            assert state is not None
            self._run(state)

    def _run(self, recorded_end: State) -> None:
        import time

        import torch

        from pol.replay import Replayer, first_difference, replay_digests

        t0 = time.perf_counter()
        self.done = True
        loss = self.plan.step["loss"].get("spec")
        indices = BatchSchedule(self.plan.run_seed, len(self.dataset), self.plan.samples_per_step).block(0, self._end)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        # (not inside another autocast region: nested regions keep autocast's weight cache across steps)
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            replayer = Replayer(self.plan, self.dataset, self.device, self.model_spec, loss)
            replayed_end, replayed = replay_digests(replayer, self._initial, 0, indices)
        self.seconds = time.perf_counter() - t0
        recorded = [self._digests.get(t, b"") for t in range(1, self._end + 1)]
        first = first_difference(recorded, replayed)
        if first is None:
            return
        raise PlanError(diagnose(first + 1, recorded_end, replayed_end))


def diagnose(step: int, recorded: State, replayed: State) -> str:
    """One paragraph: the first step whose state differs from replay, what differs, likely causes."""
    differ = sorted(k for k in set(recorded) | set(replayed)
                    if k not in recorded or k not in replayed or not np.array_equal(recorded[k], replayed[k]))
    weights = [k for k in differ if k.startswith(MODEL) and not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked"))]
    buffers = [k for k in differ if k.startswith(MODEL) and k not in weights]
    optim = [k for k in differ if k.startswith(OPTIMIZER_STATE)]
    rng = [k for k in differ if k.startswith("rng/")]
    causes = []
    if weights or optim:
        causes.append("the loss or the model call differs from the plan (loss kwargs such as label_smoothing or "
                      "reduction, the output used, a custom loss): declare it in the Recorder (loss=, loss_kwargs=, "
                      "output=)")
        causes.append("the model or optimizer is changed outside optimizer.step() (in-place edits, weight tying done "
                      "in the loop, an LR or momentum change)")
    if buffers and not weights:
        causes.append("extra forward passes in training mode (BatchNorm statistics): run them under model.eval()")
    if rng:
        causes.append("randomness drawn outside the per-step seed (e.g. torch.rand in the loop, or a "
                      "data-augmenting Dataset using its own RNG)")
    causes.append("non-deterministic kernels (set torch.use_deterministic_algorithms(True) before recording)")
    what = ", ".join(f"{len(v)} {name}" for name, v in (("weight tensor(s)", weights), ("buffer(s)", buffers),
                                                          ("optimizer tensor(s)", optim), ("RNG state(s)", rng)) if v)
    return (f"the recorder replayed the first segment and step {step} does not reproduce the loop's state (at the "
            f"segment's end {what or 'the state'} differ, e.g. {differ[:3]}); this proof would not verify. Likely "
            f"causes: {'; '.join(causes)}. (Recorder(self_check=False) skips this check.)")
