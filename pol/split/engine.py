"""One training step of one node, against a message link: the code both training and replay run.

The micro-batch schedule ``gpipe-fill-drain-v1`` (committed in the plan): with ``m`` micro-batches
per step, every stage ``s`` (ascending) runs its forward pass on micro-batches ``0..m-1``; then
every stage (descending) runs its backward pass on micro-batches ``0..m-1``; then every stage
takes one optimizer step. A node executes the operations of its own stages in that global order;
sends are asynchronous, so the order cannot deadlock (each operation waits only on earlier ones).

Per micro-batch ``j`` of step ``t``:

* stage 0 reads rows ``j*b/m .. (j+1)*b/m`` of step ``t``'s batch (seeded order, :mod:`pol.sampler`);
  any other stage receives the activation of stage ``s-1``, as a fresh leaf that requires grad;
* ``torch.manual_seed(derive_seed(seed, "split-step", s, t, j))`` right before the stage's forward
  (the CPU generator, and the CUDA device's when the stage runs there: :func:`reseed`);
* the last stage computes ``loss_fn(output, labels) / m`` and back-propagates it; any other stage
  back-propagates the gradient received from stage ``s+1``; every stage but 0 sends its input's
  gradient to stage ``s-1``.

Gradients accumulate over micro-batches in order ``0..m-1``; the learning rate of step ``t`` is
set from each stage's committed schedule before the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pol.hashing import derive_seed
from pol.sampler import BatchSchedule
from pol.schedule import lr_at
from pol.split.data import NodeData
from pol.split.messages import BACKWARD, FORWARD
from pol.split.node_state import StageHolder
from pol.split.plan import PipelinePlan
from pol.training import loss_function


class Link(Protocol):
    """Where a node's messages go: the network (training) or a recorded transcript (replay)."""

    def send(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> None: ...

    def recv(self, direction: int, step: int, micro_batch: int, sender_stage: int) -> Any: ...

    def end_step(self, step: int) -> None: ...


def stage_seed(seed: int, stage: int, step: int, micro_batch: int) -> int:
    return derive_seed(seed, "split-step", stage, step, micro_batch)


def reseed(seed: int, on_cuda: bool) -> None:
    """``torch.manual_seed(seed)`` for the generators a stage uses: the CPU one, and the current
    CUDA device's. (``torch.manual_seed`` also queues lazy seeding calls for every accelerator
    type, recording a stack trace each time: 0.2 ms, as long as a small stage's forward.)"""
    import torch

    torch.default_generator.manual_seed(seed)
    if on_cuda:
        torch.cuda.manual_seed(seed)


class NodeProgram:
    """The stages one node holds, and how it runs a step of the committed schedule.

    Subclasses change behaviour at three seams (the attack simulations in
    ``scripts/attacks_split`` use them): :meth:`outgoing` (what is sent), :meth:`apply_updates`
    (the optimizer steps).
    """

    def __init__(self, plan: PipelinePlan, rank: int, stages: Sequence[StageHolder], data: NodeData,
                 device: Any = "cpu"):
        self.plan, self.rank, self.device = plan, rank, device
        self.stages = sorted(stages, key=lambda h: h.index)
        self.data = data
        self.last = plan.num_stages - 1
        self.loss_fn = loss_function(plan.loss)
        self.batches = BatchSchedule(plan.seed, int(plan.data["num_samples"]), plan.batch_size)
        self.last_loss: float | None = None
        self.on_cuda = str(device).startswith("cuda")

    # -- seams ------------------------------------------------------------------------------
    def outgoing(self, direction: int, step: int, micro_batch: int, stage: int, tensor: Any) -> Any:
        """The tensor actually sent (honest: the one computed)."""
        return tensor

    def apply_updates(self, step: int) -> None:
        for holder in self.stages:
            holder.optimizer.step()

    # -- inputs -----------------------------------------------------------------------------
    def _rows(self, step: int, micro_batch: int) -> Any:
        import torch

        idx = self.batches.indices(step)
        size = self.plan.micro_batch_size
        return torch.from_numpy(idx[micro_batch * size:(micro_batch + 1) * size])

    def features(self, step: int, micro_batch: int) -> Any:
        if self.data.features is None:
            raise RuntimeError(f"node {self.rank} holds stage 0 but not the features")
        return self.data.features[self._rows(step, micro_batch)].to(self.device)

    def labels(self, step: int, micro_batch: int) -> Any:
        if self.data.labels is None:
            raise RuntimeError(f"node {self.rank} holds the last stage but not the labels")
        return self.data.labels[self._rows(step, micro_batch)].to(self.device)

    # -- the step ---------------------------------------------------------------------------
    def step(self, t: int, link: Link) -> None:
        import torch

        m = self.plan.micro_batches
        for holder in self.stages:
            holder.optimizer.zero_grad(set_to_none=True)
            for group in holder.optimizer.param_groups:
                group["lr"] = lr_at(holder.lr_schedule, t)
        saved: dict[tuple[int, int], tuple[Any, Any]] = {}
        for holder in self.stages:                       # forward, stages ascending
            s = holder.index
            for j in range(m):
                if s == 0:
                    x = self.features(t, j)
                else:
                    x = link.recv(FORWARD, t, j, s - 1).detach().requires_grad_(True)
                reseed(stage_seed(self.plan.seed, s, t, j), self.on_cuda)
                y = holder.module(x)
                saved[(s, j)] = (x, y)
                if s < self.last:
                    link.send(FORWARD, t, j, s, self.outgoing(FORWARD, t, j, s, y.detach()))
        losses = []
        for holder in reversed(self.stages):             # backward, stages descending
            s = holder.index
            for j in range(m):
                x, y = saved.pop((s, j))
                if s == self.last:
                    loss = self.loss_fn(y, self.labels(t, j)) / m
                    loss.backward()
                    losses.append(loss.detach())
                else:
                    torch.autograd.backward(y, link.recv(BACKWARD, t, j, s + 1))
                if s > 0:
                    link.send(BACKWARD, t, j, s, self.outgoing(BACKWARD, t, j, s, x.grad))
        self.apply_updates(t)
        link.end_step(t)
        if losses:
            self.last_loss = float(sum(float(v) for v in losses))


def expected_messages(plan: PipelinePlan, rank: int, step: int) -> tuple[list[tuple[int, int, int, int]],
                                                                         list[tuple[int, int, int, int]]]:
    """The (step, micro-batch, direction, sender stage) of every message node ``rank`` receives
    and sends in ``step``, in the order :meth:`NodeProgram.step` receives and sends them."""
    stages, last, m = plan.node_stages(rank), plan.num_stages - 1, plan.micro_batches
    received: list[tuple[int, int, int, int]] = []
    sent: list[tuple[int, int, int, int]] = []
    for s in stages:
        for j in range(m):
            if s > 0:
                received.append((step, j, FORWARD, s - 1))
            if s < last:
                sent.append((step, j, FORWARD, s))
    for s in reversed(stages):
        for j in range(m):
            if s < last:
                received.append((step, j, BACKWARD, s + 1))
            if s > 0:
                sent.append((step, j, BACKWARD, s))
    return received, sent
