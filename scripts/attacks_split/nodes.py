"""Dishonest nodes: :class:`pol.split.node.NodeRuntime` subclasses that run as real pipeline
processes (``python -m pol.split.node --node-impl scripts.attacks_split.nodes:PoisonNode``).

Each one holds its own valid key and follows the protocol where it must to stay in the run; it
lies in one specific way, documented on the class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pol.split.comm import DistLink
from pol.split.engine import NodeProgram
from pol.split.messages import BACKWARD, FORWARD
from pol.split.node import NodeRuntime

_DIRECTIONS = {"activation": FORWARD, "gradient": BACKWARD}


class _SkipUpdates(NodeProgram):
    def apply_updates(self, step: int) -> None:
        """Lazy: no optimizer step (the compute a free-rider saves)."""


class LazyNode(NodeRuntime):
    """Skips every update of its stage and fabricates checkpoints that show steady progress
    (its real, never-updated weights plus a drift of ``drift`` per step). It still forwards and
    back-propagates, so the pipeline keeps running."""

    def __init__(self, *args: Any, drift: float = 1e-4, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.drift = drift

    def make_program(self, plan: Any, stages: list[Any], data: Any) -> Any:
        return _SkipUpdates(plan, self.rank, stages, data, self.device)

    def checkpoint_state(self, stages: list[Any], step: int) -> dict[str, Any]:
        state = super().checkpoint_state(stages, step)
        for name, value in state.items():
            if name.startswith("model/") and value.dtype == np.float32:
                state[name] = (value + np.float32(self.drift * step)).astype(np.float32)
        return state


class _Poison(NodeProgram):
    def __init__(self, *args: Any, direction: int, scale: float, noise: float, from_step: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.poison_direction, self.scale, self.noise, self.from_step = direction, scale, noise, from_step
        self.honest: dict[tuple[int, int, int, int], Any] = {}

    def outgoing(self, direction: int, step: int, micro_batch: int, stage: int, tensor: Any) -> Any:
        import torch

        if direction != self.poison_direction or step < self.from_step:
            return tensor
        self.honest[(step, micro_batch, direction, stage)] = tensor
        g = torch.Generator().manual_seed(1000003 * step + micro_batch)
        return tensor * self.scale + self.noise * torch.randn(tensor.shape, generator=g).to(tensor.device)


class PoisonNode(NodeRuntime):
    """Sends ``scale * computed + noise * N(0, 1)`` instead of the activations (or gradients) its
    stage computed, from step ``from_step`` on, signed with its own key, and records exactly
    what it sent (its transcript is consistent)."""

    def __init__(self, *args: Any, direction: str = "activation", scale: float = -1.0, noise: float = 0.0,
                 from_step: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.poison = {"direction": _DIRECTIONS[direction], "scale": scale, "noise": noise, "from_step": from_step}
        self.program: Any = None

    def make_program(self, plan: Any, stages: list[Any], data: Any) -> Any:
        self.program = _Poison(plan, self.rank, stages, data, self.device, **self.poison)
        return self.program


class _PhantomLink(DistLink):
    """Sends the poisoned tensor under a valid signature, but records in its own transcript a
    header (also validly self-signed) for the honest tensor it never sent."""

    program: Any = None
    stash: dict[str, Any] = {}

    def send(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> None:
        honest = self.program.honest.pop((step, micro_batch, direction, sender_stage), None)
        if honest is None:
            return super().send(direction, step, micro_batch, sender_stage, tensor)
        honest = honest.detach().contiguous()
        self.phantom = self.make_header(direction, step, micro_batch, sender_stage, honest)
        self.stash[f"{step}_{micro_batch}_{direction}_{sender_stage}"] = honest.cpu().numpy().copy()
        super().send(direction, step, micro_batch, sender_stage, tensor)

    def record_sent(self, header: Any) -> None:
        phantom = getattr(self, "phantom", None)
        self.phantom = None
        super().record_sent(phantom if phantom is not None else header)


class PhantomDigestNode(PoisonNode):
    """A poisoning node that covers up: its proof records digests of the honest tensors it
    never sent (so a replay of its own segment reproduces them). With ``stash`` (a path), it
    also keeps those honest tensors, for a colluding receiver to put in its own record."""

    def __init__(self, *args: Any, stash: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stash_path = stash
        self.stash: dict[str, Any] = {}

    def make_link(self, plan: Any, key: Any, recorder: Any) -> Any:
        link = _PhantomLink(plan, self.rank, self.device, key, recorder)
        link.program, link.stash = self.program, self.stash
        return link

    def train(self, **kwargs: Any) -> Any:
        result = super().train(**kwargs)
        if self.stash_path:
            np.savez(self.stash_path, **self.stash)
        return result


class _ReplacedLink(DistLink):
    at_step = 0
    impostor: Any = None

    def make_header(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> Any:
        if self.signed and step >= self.at_step:
            self.key = self.impostor
        return super().make_header(direction, step, micro_batch, sender_stage, tensor)


class ReplacedNode(NodeRuntime):
    """Replaced mid-run: from step ``at_step`` on, another party (with another key, not in the
    plan) signs this node's messages."""

    def __init__(self, *args: Any, at_step: int = 3, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.at_step = at_step

    def make_link(self, plan: Any, key: Any, recorder: Any) -> Any:
        from nacl.signing import SigningKey

        link = _ReplacedLink(plan, self.rank, self.device, key, recorder)
        link.at_step, link.impostor = self.at_step, SigningKey.generate()
        return link


class _CorruptLink(DistLink):
    at_step = 0

    def transmit(self, header: Any, tensor: Any) -> None:
        if header.step >= self.at_step:
            tensor = tensor.clone()
            tensor.view(-1)[0] += 1.0
        super().transmit(header, tensor)


class CorruptInTransitNode(NodeRuntime):
    """Signs the digest of the tensor its stage computed but delivers another one (as a
    man-in-the-middle or a faulty sender would) from step ``at_step`` on."""

    def __init__(self, *args: Any, at_step: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.at_step = at_step

    def make_link(self, plan: Any, key: Any, recorder: Any) -> Any:
        link = _CorruptLink(plan, self.rank, self.device, key, recorder)
        link.at_step = self.at_step
        return link
