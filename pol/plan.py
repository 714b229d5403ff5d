"""The training plan: everything a verifier needs, committed and signed before step one."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pol import schedule
from pol.errors import PlanError, ProofFormatError
from pol.hashing import canonical_json

PLAN_VERSION = 1


@dataclass(frozen=True)
class Plan:
    seed: int
    model: dict[str, Any]            # {"spec": "digits-mlp" | "module:callable", "kwargs": {...}}
    data: dict[str, Any]             # {"spec", "kwargs", "num_samples", "merkle_root", "sample_digest"}
    optimizer: dict[str, Any]        # {"type": "SGD", "hparams": {...}}
    lr_schedule: dict[str, Any]
    loss: str
    batch_size: int
    every: int                       # k: a checkpoint every k steps
    num_steps: int
    environment: dict[str, Any]
    signer: str                      # hex Ed25519 public key
    created_at: str                  # ISO-8601 UTC, signed with the plan
    sampler: str = "epoch-permutation-v1/drop-last"
    step_rng: str = "torch.manual_seed(derive_seed(seed,'step',t)) before each step"
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    def digest(self) -> bytes:
        return hashlib.sha256(b"pol-plan-v1" + self.to_bytes()).digest()

    @property
    def num_checkpoints(self) -> int:
        """Checkpoint 0 is the initial state; then one every k steps, plus the last step."""
        return 1 + -(-self.num_steps // self.every)

    def checkpoint_step(self, i: int) -> int:
        return min(i * self.every, self.num_steps)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Plan":
        """Parse and validate stored plan bytes; only the canonical encoding is accepted, so
        that the plan digest (over :meth:`to_bytes`) is the digest of the stored bytes."""
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProofFormatError(f"plan is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProofFormatError("plan is not a JSON object")
        if obj.get("version") != PLAN_VERSION:
            raise ProofFormatError(f"unsupported plan version {obj.get('version')!r} (this build reads {PLAN_VERSION})")
        try:
            plan = cls(**obj)
        except TypeError as exc:
            raise ProofFormatError(f"plan fields do not match this format: {exc}") from None
        _check_types(plan)
        try:
            canonical = plan.to_bytes() == bytes(raw)
        except ValueError:  # NaN or Infinity, which canonical JSON excludes
            canonical = False
        if not canonical:
            raise ProofFormatError("plan is not canonical JSON (sorted keys, no whitespace, ASCII, every field)")
        return plan


# field -> (expected types, required): the objects inside a plan (see docs/FORMAT.md)
_NONE = type(None)
_SHAPES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "model": {"spec": ((str,), True), "kwargs": ((dict,), True)},
    "data": {"spec": ((str, _NONE), True), "kwargs": ((dict,), True), "num_samples": ((int,), True),
             "merkle_root": ((str,), True), "sample_digest": ((str,), False)},
    "optimizer": {"type": ((str,), True), "hparams": ((dict,), True)},
    "environment": {},
    "extra": {"codec": ((str,), False), "compact_anchor_every": ((int, _NONE), False)},
}
_JSON_NAMES = {str: "a string", dict: "an object", int: "an integer", _NONE: "null"}


def _check_types(plan: Plan) -> None:
    ints = {"seed": plan.seed, "batch_size": plan.batch_size, "every": plan.every, "num_steps": plan.num_steps}
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProofFormatError(f"plan field {name} must be an integer, found {value!r:.40}")
    if plan.batch_size <= 0 or plan.every <= 0 or plan.num_steps <= 0:
        raise ProofFormatError("plan batch_size, every and num_steps must be positive")
    for name in ("loss", "signer", "created_at", "sampler", "step_rng"):
        if not isinstance(getattr(plan, name), str):
            raise ProofFormatError(f"plan field {name} must be a string")
    for name, fields in _SHAPES.items():
        obj = getattr(plan, name)
        if not isinstance(obj, dict):
            raise ProofFormatError(f"plan field {name} must be an object")
        for key, (types, required) in fields.items():
            if key not in obj:
                if required:
                    raise ProofFormatError(f"plan {name} lacks {key!r}")
            elif not isinstance(obj[key], types) or isinstance(obj[key], bool):
                raise ProofFormatError(f"plan {name}.{key} must be {' or '.join(_JSON_NAMES[t] for t in types)}, "
                                       f"found {obj[key]!r:.40}")
    if plan.data["num_samples"] < 0:
        raise ProofFormatError("plan data.num_samples must not be negative")
    try:
        schedule.validate(plan.lr_schedule)
    except PlanError as exc:
        raise ProofFormatError(f"plan lr_schedule: {exc}") from None
    values = plan.lr_schedule.get("values")
    if plan.lr_schedule["kind"] == "table" and len(values) < plan.num_steps:
        raise ProofFormatError(f"plan lr_schedule table has {len(values)} entries for {plan.num_steps} steps")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
