"""Checks that a recorded loop performs the committed step, while it runs.

Replay runs exactly the step of :mod:`pol.step`; a loop that does something else (clips
gradients itself, runs the forward pass under another autocast setting, runs extra forward
passes in training mode) records a proof its own verifier rejects. :class:`StepGuard` watches
the first segment of training (the loop's code does the same thing every step) and stops the
run at the first deviation, naming it. It also performs the committed gradient clipping, right
before ``optimizer.step()``: the loop must not clip itself (clipping twice is not the same as
clipping once, bitwise).

Watching costs a hook call per parameter per backward and a few checks per forward; after the
first segment the gradient hooks are removed. (The count of forward passes per step is the
recorder's: a training forward pass *is* a micro-batch there.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pol.errors import PlanError
from pol.step import clip_gradients


class StepGuard:
    def __init__(self, model: Any, optimizer: Any, clip: Mapping[str, Any] | None, accumulation: int,
                 autocast: Mapping[str, Any] | None = None, watch_steps: int = 1):
        self._model, self._optimizer = model, optimizer
        self._clip = dict(clip) if clip is not None else None
        self._accumulation = accumulation
        self._autocast = dict(autocast) if autocast is not None else None
        self._watch_steps = max(1, watch_steps)
        self._versions: dict[int, int] = {}
        self._handles: list[Any] = []
        for p in model.parameters():
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._after_accumulate))

    def _after_accumulate(self, p: Any) -> None:
        self._versions[id(p)] = p.grad._version

    def on_forward(self, module: Any, step: int) -> None:
        """A training forward pass starts (called by the recorder's forward pre-hook)."""
        import torch

        if step >= self._watch_steps:
            return
        device_type = next(module.parameters()).device.type
        enabled = torch.is_autocast_enabled(device_type)
        if self._autocast is None and enabled:
            raise PlanError("the forward pass runs under torch.autocast but the plan commits none: pass "
                            f"autocast='{str(torch.get_autocast_dtype(device_type)).replace('torch.', '')}' to the Recorder")
        if self._autocast is not None:
            want = self._autocast["dtype"]
            got = str(torch.get_autocast_dtype(device_type)).replace("torch.", "") if enabled else None
            if got != want:
                raise PlanError(f"the plan commits autocast {want} but the forward pass runs with "
                                f"{'autocast ' + got if got else 'no autocast'}: wrap forward and loss in "
                                f"torch.autocast(device_type='{device_type}', dtype=torch.{want})")

    def check_before_step(self, step: int) -> None:
        """Run in the optimizer's pre-step hook: verify what the loop did, then clip as committed."""
        if step < self._watch_steps:
            self._verify(step)
        elif self._handles:
            for h in self._handles:
                h.remove()
            self._handles = []
        self.clip()

    def _verify(self, step: int) -> None:
        for group in self._optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                seen = self._versions.get(id(p))
                if seen is not None and p.grad._version != seen:
                    raise PlanError("gradients were changed between backward() and optimizer.step() (gradient "
                                    "clipping?). The recorder clips as the plan commits: pass clip=<max_norm> (or a "
                                    "pol.step clip spec) to the Recorder and remove your own clipping call")
        self._versions.clear()

    def clip(self) -> None:
        clip_gradients(self._model, self._clip)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
