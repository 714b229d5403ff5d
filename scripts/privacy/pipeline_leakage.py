"""Label leakage measured on the split-learning pipeline itself (``pol split train``).

A run is trained by the real command (``python -m pol split train ...``: one process per node on
``torch.distributed``, signed messages, one proof per node). The attack then reads what the
node **without labels** received from the label owner's head, from that node's own proof
(``pol-split-node`` v1, :class:`pol.split.proof.NodeProofReader`): every received tensor whose
signed header says *gradient from stage S-1*, with the step and micro-batch of its header. The
rows of a step's micro-batches, in micro-batch order, are the examples of the step's batch,
whose dataset indices the plan commits (its seed and sampler: :class:`pol.sampler.BatchSchedule`).

* plain split (``--stages 2``): node 0 (features, stage 0) receives ``dloss/d(stage-0 output)``
  from node 1 (stages 1, the head and the labels);
* U-shaped split (``--stages 3 --labels-at first``): node 0 holds stage 0, the head and the
  labels; node 1 (stage 1) receives ``dloss/d(stage-1 output)`` from node 0's head.

The labels are those of :func:`scripts.privacy.data.digits_zero_vs_rest` (the built-in digits,
"is it a 0": about 10% positives) or, with ``binary=False``, the built-in ten digits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scripts.privacy.data import ZERO_VS_REST_SPEC
from scripts.privacy.label_leakage import CutGradients

ROOT = Path(__file__).resolve().parents[2]
TASK = "digits-mlp"
SPLIT_ARGS = {"plain": ["--stages", "2"], "u_shaped": ["--stages", "3", "--labels-at", "first"]}


@dataclass(frozen=True)
class PipelineSettings:
    split: str = "plain"
    seed: int = 0
    epochs: int = 10
    steps: int | None = None          # overrides epochs (tests)
    batch_size: int = 64
    micro_batches: int = 2
    every: int = 23                   # one checkpoint per epoch at batch 64
    binary: bool = True               # "is it a 0" labels; False: the built-in ten digits
    label_noise: str | None = None    # pol split train --label-noise

    def __post_init__(self) -> None:
        if self.split not in SPLIT_ARGS:
            raise ValueError(f"split must be one of {tuple(SPLIT_ARGS)}, got {self.split!r}")

    @property
    def data_spec(self) -> str | None:
        return ZERO_VS_REST_SPEC if self.binary else None

    def train_args(self) -> list[str]:
        args = ["--task", TASK, *SPLIT_ARGS[self.split], "--seed", str(self.seed), "--batch-size",
                str(self.batch_size), "--micro-batches", str(self.micro_batches), "--every", str(self.every)]
        args += ["--steps", str(self.steps)] if self.steps is not None else ["--epochs", str(self.epochs)]
        if self.data_spec:
            args += ["--data", self.data_spec]
        if self.label_noise:
            args += ["--label-noise", self.label_noise]
        return args


def train_pipeline(settings: PipelineSettings, run_dir: Path, keys_dir: Path) -> dict[str, Any]:
    """``pol split train`` as a user runs it; returns its ``--json`` summary plus ``wall_seconds``."""
    cmd = [sys.executable, "-m", "pol", "split", "train", *settings.train_args(), "--out", str(run_dir),
           "--keys", str(keys_dir), "--force", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                                    if os.environ.get("PYTHONPATH") else "")}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"pol split train failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    summary = json.loads(done.stdout)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    return summary


def receiving_node(plan: Any) -> int:
    """The node that receives the head's gradient: the holder of stage S-2 (never the label owner
    in the built-in splits)."""
    return plan.stage_node(plan.num_stages - 2)


def received_gradients(proof: str | os.PathLike[str], sender_stage: int | None = None) -> list[CutGradients]:
    """The gradients a node received from ``sender_stage`` (default: the head, stage S-1), one
    :class:`CutGradients` per step, read from the node's own proof. Every tensor is checked
    against the digest its sender signed; the rows are labelled by the batch the plan commits."""
    from pol.sampler import BatchSchedule
    from pol.split.messages import BACKWARD, tensor_digest
    from pol.split.plan import SAMPLER
    from pol.split.proof import NodeProofReader

    with NodeProofReader(proof) as reader:
        plan = reader.plan
        sender = plan.num_stages - 1 if sender_stage is None else sender_stage
        if plan.sampler != SAMPLER:
            raise ValueError(f"{proof}: the plan's sampler {plan.sampler!r} is not {SAMPLER!r}")
        by_step: dict[int, dict[int, np.ndarray]] = {}
        for i in reader.transcript_segments:
            segment = reader.transcript(i)
            for header, tensor in zip(segment.received(), segment.received_tensors):
                if header.direction != BACKWARD or header.sender_stage != sender:
                    continue
                if tensor_digest(tensor) != header.digest:
                    raise ValueError(f"{proof}: a recorded gradient differs from its signed digest "
                                     f"(step {header.step}, micro-batch {header.micro_batch})")
                by_step.setdefault(header.step, {})[header.micro_batch] = tensor
        batches = BatchSchedule(plan.seed, int(plan.data["num_samples"]), plan.batch_size)
        out = []
        for step in sorted(by_step):
            parts = by_step[step]
            if sorted(parts) != list(range(plan.micro_batches)):
                raise ValueError(f"{proof}: step {step} holds micro-batches {sorted(parts)} of {plan.micro_batches}")
            grads = np.concatenate([parts[j].reshape(len(parts[j]), -1) for j in range(plan.micro_batches)])
            indices = batches.indices(step)
            if len(grads) != len(indices):
                raise ValueError(f"{proof}: step {step} holds {len(grads)} gradient rows for a batch of {len(indices)}")
            out.append(CutGradients(step, indices, grads))
        return out


def positive_labels(data_spec: str | None) -> np.ndarray:
    """Ground truth of the training set (the evaluator's, never the attacker's): is it a 0."""
    from pol.split.data import training_columns

    _, y = training_columns(data_spec or TASK, {})
    return (y.numpy() == (1 if data_spec else 0))


def heldout_accuracy(run_dir: Path, data_spec: str | None) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of the run's final stages, concatenated, on the held-out set."""
    import torch

    from pol.split.proof import run_final_weights
    from pol.split.stages import split_model
    from pol.tasks import load_data

    plan, weights = run_final_weights(run_dir)
    model = split_model(TASK, plan.num_stages, plan.seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x, y = load_data(data_spec or TASK).heldout.tensors
    with torch.no_grad():
        pred = model.eval()(x).argmax(1).numpy()
    truth = y.numpy()
    balanced = float(np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)]))
    return float((pred == truth).mean()), balanced


@dataclass
class PipelineRun:
    settings: PipelineSettings
    run_dir: Path
    receiver: int                      # the node whose proof the transcript comes from
    transcript: list[CutGradients]
    positive: np.ndarray
    test_accuracy: float
    test_balanced_accuracy: float
    train_wall_seconds: float
    verified: bool | None
    noise_secret: bytes | None         # the label owner's, read from its secret file (protected runs)

    def noise_direction(self, step: int, shape: tuple[int, ...]) -> np.ndarray:
        """The noise draw of a step, regenerated from the secret (what a party holding it can do)."""
        from pol.split.label_noise import LabelNoise

        if self.noise_secret is None:
            raise ValueError("this run adds no label noise")
        noise = LabelNoise("iso", 1.0, self.noise_secret)
        m = self.settings.micro_batches
        rows = shape[0] // m
        return np.concatenate([noise.draw(step, j, (rows, *shape[1:])).numpy() for j in range(m)])


def run_and_read(settings: PipelineSettings, run_dir: Path, keys_dir: Path, *, verify: bool = True) -> PipelineRun:
    """Train one pipeline, optionally verify it (``verify_pipeline``, as ``pol split verify``),
    and read what its node without labels received."""
    from pol.split.label_noise import read_secret, secret_path
    from pol.split.proof import NodeProofReader, node_proof_path
    from verifier.split import SplitVerifyOptions, verify_pipeline

    summary = train_pipeline(settings, run_dir, keys_dir)
    with NodeProofReader(node_proof_path(run_dir, 0)) as reader:
        plan = reader.plan
    receiver = receiving_node(plan)
    verified = None
    if verify:
        report = verify_pipeline(run_dir, keys=keys_dir, options=SplitVerifyOptions(seed=settings.seed,
                                                                                     data=settings.data_spec))
        verified = report.exit_code == 0
    secret = read_secret(secret_path(run_dir, plan.label_owner)) if settings.label_noise else None
    acc, balanced = heldout_accuracy(run_dir, settings.data_spec)
    return PipelineRun(settings, run_dir, receiver, received_gradients(node_proof_path(run_dir, receiver)),
                       positive_labels(settings.data_spec), acc, balanced, summary["wall_seconds"], verified, secret)
