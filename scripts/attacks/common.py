"""Shared machinery for the forgery generators.

Every generator plays an attacker who holds its own Ed25519 key (so it can always sign), the
victim's honest proof or its final weights ``W``, the public task code, and the data set. It
builds checkpoint states shaped exactly like the recorder's (``pol.state.capture``), a plan
naming the attacker as signer, and writes a complete, validly signed and chained proof with
:func:`pol.assemble.assemble_proof`. Whatever the verifier then rejects, it rejects on the
*training*, not on a broken file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol.assemble import assemble_proof, read_states
from pol.envinfo import environment_fingerprint
from pol.hashing import derive_seed, tagged_hash
from pol.keys import load_signing_key
from pol.plan import Plan, utc_now
from pol.proof_file import ProofReader
from pol.sampler import BatchSchedule
from pol.schedule import lr_at
from pol.state import MODEL, OPTIM_STATE, State, model_weights
from pol.tasks import TaskData, load_data, seeded_model

Weights = dict[str, np.ndarray]


@dataclass
class Victim:
    """What the attacker holds: the victim's plan, its final weights W, and (if any) its states."""

    plan: Plan
    weights: Weights
    states: list[State] | None = None
    indices: np.ndarray | None = None
    path: Path | None = None
    step_digests: list[bytes] | None = None


@dataclass
class Forgery:
    """A written forgery and what the verifier should say about it."""

    attack: str
    path: Path
    expected_checks: set[str]            # checks that must be among the failed ones
    claimed_weights: Weights | None = None
    extra_files: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    trained_steps: int = 0               # optimizer steps the attacker actually ran
    expect_refusal_in_auto_mode: bool = False  # an environment claim no verifier reproduces: exit 2, not a verdict


def load_victim(path: str | os.PathLike[str]) -> Victim:
    with ProofReader(path) as r:
        last = r.num_checkpoints - 1
        weights = {k: v.copy() for k, v in model_weights(r.checkpoint_state(last)).items()}
        states = read_states(r) if r.mode == "full" else None
        steps = list(r.step_state_digests) if r.step_state_digests is not None else None
        return Victim(r.plan, weights, states, r.indices(), Path(path), steps)


def as_key(key: SigningKey | str | os.PathLike[str]) -> SigningKey:
    return key if isinstance(key, SigningKey) else load_signing_key(key)


def attacker_plan(victim_plan: Plan, key: SigningKey, *, seed: int | None = None, **changes: Any) -> Plan:
    """The victim's plan re-issued by the attacker: its signer, a fresh nonce and date, this machine's env."""
    fields = {
        **{f.name: getattr(victim_plan, f.name) for f in dataclasses.fields(victim_plan)},
        "signer": bytes(key.verify_key).hex(),
        # a nonce of the attacker's choosing, the same for every plan it derives with this seed
        "nonce": tagged_hash(b"attacker-nonce", bytes(key.verify_key), str(seed).encode())[:16].hex(),
        "created_at": utc_now(),
        "environment": environment_fingerprint("cpu", victim_plan.environment.get("dtype", "float32")),
    }
    if seed is not None:
        fields["seed"] = int(seed)
    fields.update(changes)
    return Plan(**fields)


def seeded_weights(plan: Plan) -> Weights:
    model = seeded_model(plan.model["spec"], plan.model.get("kwargs") or {}, plan.run_seed)
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def committed_indices(plan: Plan) -> np.ndarray:
    return BatchSchedule(plan.run_seed, int(plan.data["num_samples"]), plan.samples_per_step).block(0, plan.num_steps)


def step_rng(plan: Plan, step: int) -> np.ndarray:
    """The torch CPU RNG state an honest run shows at a checkpoint (reseeded before each step)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(plan.run_seed, "step", max(step - 1, 0), 0))
        return torch.get_rng_state().numpy().copy()


def make_state(plan: Plan, step: int, weights: Weights, momentum: Weights | None) -> State:
    """A checkpoint state as the recorder would capture it (SGD-momentum layout)."""
    state: State = {MODEL + k: np.ascontiguousarray(v, dtype=v.dtype) for k, v in weights.items()}
    if step > 0 and momentum is not None:
        for name, buf in momentum.items():
            state[f"{OPTIM_STATE}{name}/momentum_buffer"] = np.ascontiguousarray(buf, dtype=np.float32)
    state["optim/lr"] = np.asarray(lr_at(plan.lr_schedule, max(step - 1, 0)), dtype=np.float64)
    state["rng/torch_cpu"] = step_rng(plan, step)
    state["meta/step"] = np.asarray(step, dtype=np.int64)
    return state


def float_names(weights: Weights) -> list[str]:
    return [k for k, v in weights.items() if v.dtype.kind == "f"]


def interpolate(a: Weights, b: Weights, t: float) -> Weights:
    return {k: (a[k] + np.float32(t) * (b[k] - a[k])).astype(a[k].dtype) if a[k].dtype.kind == "f" else b[k].copy()
            for k in a}


def linear_momentum(plan: Plan, start: Weights, end: Weights, steps: int, lr: float) -> Weights:
    """The SGD momentum buffer of a run moving ``start -> end`` in equal steps: b = -delta / lr."""
    scale = 1.0 / (steps * max(lr, 1e-30))
    return {k: (-(end[k] - start[k]) * scale).astype(np.float32) for k in float_names(end) if not _is_buffer(plan, k)}


def _is_buffer(plan: Plan, name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def update_norm(a: State, b: State) -> float:
    wa, wb = model_weights(a), model_weights(b)
    return float(np.sqrt(sum(float(np.sum((wb[k].astype(np.float64) - wa[k]) ** 2)) for k in float_names(wa))))


class Trainer:
    """Honest training, segment by segment, exactly as the verifier's replay runs it.

    The attacker has the code too: using the verifier's own replay step guarantees that every
    genuinely trained segment reproduces bitwise, so only the forged parts can be caught.
    """

    def __init__(self, plan: Plan, dataset: Any):
        from verifier.replay import Replayer

        self.plan = plan
        self.replayer = Replayer(plan, dataset, "cpu", plan.model["spec"])
        self.steps_run = 0
        self.step_digests: dict[int, bytes] = {}   # honest per-step state digests, by step

    def segment(self, start: State, start_step: int, indices: np.ndarray) -> State:
        from verifier.replay import replay_digests

        self.steps_run += len(indices)
        end, digests = replay_digests(self.replayer, start, start_step, indices)
        self.step_digests.update({start_step + 1 + i: d for i, d in enumerate(digests)})
        return {k: v.copy() for k, v in end.items()}


def write(path: str | os.PathLike[str], plan: Plan, states: list[State], indices: np.ndarray,
          key: SigningKey, step_digests: dict[int, bytes] | None = None, **options: Any) -> Path:
    """Write the forged proof. Per-step digests: the honest ones where the attacker trained
    (``step_digests``), a fabricated commitment elsewhere (a forged step can commit anything)."""
    path = Path(path)
    if len(states) != plan.num_checkpoints:
        raise ValueError(f"{len(states)} states for a plan of {plan.num_checkpoints} checkpoints")
    known = step_digests or {}
    rows = [known.get(t) or tagged_hash(b"forged-step", t.to_bytes(8, "little")) for t in range(plan.num_steps + 1)]
    options.setdefault("codec", "raw")
    assemble_proof(path, plan, states, indices, key, step_digests=rows, overwrite=True, **options)
    return path


def task_data(plan: Plan) -> TaskData:
    return load_data(plan.data["spec"], plan.data.get("kwargs") or {})


def replace_dataset(data: Any, x: Any = None, y: Any = None) -> Any:
    from torch.utils.data import TensorDataset

    tx, ty = data.tensors
    return TensorDataset(tx if x is None else x, ty if y is None else y)


def with_data_root(plan: Plan, dataset: Any) -> Plan:
    from pol.datacommit import data_root

    return dataclasses.replace(plan, data={**plan.data, "merkle_root": data_root(dataset).hex(),
                                           "num_samples": len(dataset)})


Progress = Callable[[int], None] | None
