"""Dishonest label owners for the label-noise tests (``--node-impl tests.split.label_noise_nodes:...``).

Each commits label noise in the plan like an honest label owner (its commitment, its secret file)
and then sends something else from its head, signed with its own key and recorded as sent.
"""

from __future__ import annotations

from typing import Any

from pol.split.label_noise import LabelNoise, new_secret
from pol.split.node import NodeRuntime


class UnprotectedHead(NodeRuntime):
    """Sends its head's clean gradients: the protection the plan promises is never applied."""

    def make_program(self, plan: Any, stages: list[Any], data: Any) -> Any:
        program = super().make_program(plan, stages, data)
        program.label_noise = None
        return program


class UncommittedNoiseHead(NodeRuntime):
    """Adds noise by the committed rule and kind, but drawn from a secret it never committed
    (noise it is free to choose)."""

    def make_program(self, plan: Any, stages: list[Any], data: Any) -> Any:
        program = super().make_program(plan, stages, data)
        committed: LabelNoise = program.label_noise
        program.label_noise = LabelNoise(committed.kind, committed.ratio, new_secret())
        return program
