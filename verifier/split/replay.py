"""Per-node replay: a node's segment recomputed from its own checkpoint and recorded inputs.

The replayed node runs the same :class:`pol.split.engine.NodeProgram` as in training, through a
:class:`TranscriptLink` instead of the network: ``recv`` returns the tensors the node recorded
(checked against their senders' signed digests by ``received_tensors``), ``send`` compares the
digest of every tensor the replay computes with the digest the node signed when it sent it.
A segment passes when every sent digest and the next checkpoint's state digest reproduce
bitwise. Nothing else is needed: no other stage's weights, and data only for the data owner
(features) and the label owner (labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pol.errors import PlanError, short_reason
from pol.hashing import state_digest
from pol.split.data import NodeData
from pol.split.engine import NodeProgram
from pol.split.messages import DIRECTIONS, torch_tensor_digest
from pol.split.node_state import StageHolder, capture_node, restore_node
from pol.split.proof import NodeProofReader
from pol.split.stages import build_stage, resolve_stage_spec
from verifier.report import Check


class MissingInput(Exception):
    """The transcript lacks a tensor the schedule needs (the transcript check blames the node)."""


class TranscriptLink:
    def __init__(self, received_headers: list[Any], received_tensors: list[np.ndarray], sent_headers: list[Any],
                 device: str):
        self._inputs = {h.key: t for h, t in zip(received_headers, received_tensors)}
        self._sent = {h.key: h.digest for h in sent_headers}
        self.device = device
        self.mismatches: list[str] = []
        self.compared = 0

    def recv(self, direction: int, step: int, micro_batch: int, sender_stage: int) -> Any:
        import torch

        key = (step, micro_batch, direction, sender_stage)
        if key not in self._inputs:
            raise MissingInput(f"no recorded {DIRECTIONS[direction]} from stage {sender_stage} at step {step}, "
                               f"micro-batch {micro_batch}")
        return torch.from_numpy(np.array(self._inputs[key])).to(self.device)

    def send(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> None:
        self.compared += 1
        if self._sent.get((step, micro_batch, direction, sender_stage)) != torch_tensor_digest(tensor):
            self.mismatches.append(f"{DIRECTIONS[direction]} of stage {sender_stage} at step {step}, "
                                   f"micro-batch {micro_batch}")

    def end_step(self, step: int) -> None:
        pass


@dataclass
class SegmentOutcome:
    segment: int
    passed: bool
    detail: str = ""
    steps: int = 0
    regenerated_steps: int = 0
    messages_compared: int = 0
    seconds: float = 0.0


@dataclass
class NodeReplayer:
    """Rebuilds node ``rank``'s stages (from the plan's seeds) and replays its segments."""

    reader: NodeProofReader
    data: NodeData
    device: str = "cpu"
    stage_modules: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        plan = self.reader.plan
        self.stages: list[StageHolder] = []
        for s in plan.node_stages(self.reader.rank):
            spec = plan.stages[s]
            module = build_stage(resolve_stage_spec(spec["module"]["spec"], self.stage_modules.get(s)),
                                 spec["module"]["kwargs"], plan.seed, s)
            self.stages.append(StageHolder.create(s, module, spec["optimizer"], spec["lr_schedule"], self.device))
        self.program = NodeProgram(plan, self.reader.rank, self.stages, self.data, self.device)

    def initial_state_digest(self) -> bytes:
        """State digest of checkpoint 0 as the plan's seeds build it on this stack."""
        return state_digest(capture_node(self.stages, 0))

    def _run(self, segment: int) -> tuple[list[str], int, int]:
        """Replay segment ``segment`` from the stages' current state; (mismatches, steps, compared)."""
        plan = self.reader.plan
        seg = self.reader.transcript(segment + 1)
        link = TranscriptLink(seg.received(), seg.received_tensors, seg.sent(), self.device)
        steps = plan.segment_steps(segment)
        for t in steps:
            self.program.step(t, link)
        problems = list(link.mismatches)
        end = capture_node(self.stages, plan.checkpoint_step(segment + 1))
        if state_digest(end) != self.reader.state_digests[segment + 1]:
            problems.append(f"checkpoint {segment + 1} does not reproduce")
        return problems, len(steps), link.compared

    def states_at(self, checkpoints: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """Prover side (answering a challenge): checkpoints rebuilt by replay from the nearest
        stored anchor, every intermediate digest checked. Raises ValueError if one differs."""
        out: dict[int, dict[str, np.ndarray]] = {}
        position: int | None = None
        for target in sorted(set(checkpoints)):
            anchor = max(i for i in self.reader.stored_checkpoints if i <= target)
            if position is None or not anchor <= position <= target:
                restore_node(self.stages, self.reader.checkpoint_state(anchor), self.device)
                position = anchor
            for i in range(position, target):
                problems, _, _ = self._run(i)
                if problems:
                    raise ValueError(f"replay from checkpoint {anchor} diverges in segment {i}: {problems[0]}")
            position = target
            out[target] = capture_node(self.stages, self.reader.plan.checkpoint_step(target))
        return out

    def replay(self, segment: int, start: dict[str, np.ndarray] | None = None) -> SegmentOutcome:
        """Replay ``segment`` from its stored start, from ``start`` (a prover's response, which
        must hash to the committed digest), or from a state regenerated from the nearest anchor."""
        started = time.perf_counter()
        try:
            return self._replay(segment, start, started)
        except (RuntimeError, KeyError, ValueError, PlanError) as exc:  # load_state_dict & co.
            return SegmentOutcome(segment, False, f"a checkpoint does not fit the stage modules: {short_reason(exc)}",
                                  seconds=time.perf_counter() - started)

    def _replay(self, segment: int, start: dict[str, np.ndarray] | None, started: float) -> SegmentOutcome:
        anchor = max(i for i in self.reader.stored_checkpoints if i <= segment)
        if start is not None and anchor != segment:
            if state_digest(start) != self.reader.state_digests[segment]:
                return SegmentOutcome(segment, False, f"the response's checkpoint {segment} differs from its "
                                      "committed digest", seconds=time.perf_counter() - started)
            restore_node(self.stages, start, self.device)
            anchor = segment
        else:
            restore_node(self.stages, self.reader.checkpoint_state(anchor), self.device)
        regenerated = 0
        try:
            for i in range(anchor, segment):  # compact proofs: regenerate the start from the anchor
                problems, n, _ = self._run(i)
                regenerated += n
                if problems:
                    return SegmentOutcome(segment, False, f"regeneration from anchor {anchor} diverges in segment {i}: "
                                          + "; ".join(problems[:2]), 0, regenerated, 0, time.perf_counter() - started)
            problems, n, compared = self._run(segment)
        except MissingInput as exc:
            return SegmentOutcome(segment, False, str(exc), 0, regenerated, 0, time.perf_counter() - started)
        detail = ""
        if problems:
            detail = f"{len(problems)} mismatch(es): " + "; ".join(problems[:3])
        return SegmentOutcome(segment, not problems, detail, n, regenerated, compared, time.perf_counter() - started)


def initialization_check(replayer: NodeReplayer) -> Check:
    if replayer.initial_state_digest() != replayer.reader.state_digests[0]:
        hint = " (or the stage code named for this verification is not the node's)" if replayer.stage_modules else ""
        return Check("initialization", False, "differs from the seeded stages",
                     f"checkpoint 0 is not the state the plan's per-stage seeds build{hint}")
    return Check("initialization", True, "checkpoint 0 = seeded stages")


def data_check(reader: NodeProofReader, data: NodeData) -> Check:
    """The owner's commitments recomputed from the data the verifier holds."""
    from pol.split.data import feature_root, label_root

    plan, rank = reader.plan, reader.rank
    parts = []
    if rank == plan.data_owner and data.features is not None:
        parts.append(("features", feature_root(data.features), plan.data["features"]["merkle_root"]))
    if rank == plan.label_owner and data.labels is not None:
        parts.append(("labels", label_root(data.labels), plan.data["labels"]["merkle_root"]))
    wrong = [name for name, root, committed in parts if root.hex() != committed]
    names = " and ".join(p[0] for p in parts)
    if wrong or data.num_samples != plan.data["num_samples"]:
        return Check("data_commitment", False, f"{names} root differs",
                     f"the committed {' and '.join(wrong) or 'sample count'} do not match the data the verifier holds")
    return Check("data_commitment", True, f"{names} Merkle root recomputed ({data.num_samples} samples)")
