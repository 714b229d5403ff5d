"""The training plan: everything a verifier needs, committed and signed before step one.

The run's randomness (initial weights, batch order, per-step seeds) comes from
:attr:`Plan.run_seed`, derived from the user's ``seed``, the signer's public key and a fresh
``nonce``: a trajectory is bound to the key that planned it, so a copied run does not verify
under another key, and two runs never share randomness by accident.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
import secrets
import struct
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from pol import schedule
from pol import step as step_spec
from pol.errors import PlanError, ProofFormatError
from pol.hashing import canonical_json, tagged_hash
from pol.smallfiles import parse_json

PLAN_VERSION = 2
SAMPLER = "epoch-permutation-v1/drop-last"
STEP_RNG = "torch.manual_seed(derive_seed(run_seed,'step',t,m)) before micro-batch m of step t"
_HEX = re.compile(r"^[0-9a-f]*$")
MAX_STEPS = 1 << 40
MAX_SAMPLES = 1 << 40


def new_nonce() -> str:
    return secrets.token_hex(16)


def derive_run_seed(seed: int, signer: str, nonce: str) -> int:
    """The seed every random choice of the run derives from: bound to the signer and the nonce."""
    digest = tagged_hash(b"pol-run-seed-v1", struct.pack("<q", seed), bytes.fromhex(signer), bytes.fromhex(nonce))
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class Plan:
    seed: int
    nonce: str                       # 32 hex digits, fresh per run
    model: dict[str, Any]            # {"spec": "digits-mlp" | "module:callable", "kwargs": {...}}
    data: dict[str, Any]             # {"spec", "kwargs", "num_samples", "merkle_root", "sample_digest", "fields"}
    optimizer: dict[str, Any]        # pol.optimizers spec: {"type", "hparams", "groups"}
    lr_schedule: dict[str, Any]      # pol.schedule spec
    step: dict[str, Any]             # pol.step spec: loss, batch layout, output, clip, autocast, accumulation
    batch_size: int                  # micro-batch size; a step takes step["accumulation"] micro-batches
    every: int                       # k: a checkpoint every k steps
    num_steps: int
    step_digests: bool               # the state digest after every step is committed (docs/FORMAT.md)
    environment: dict[str, Any]
    signer: str                      # hex Ed25519 public key
    created_at: str                  # ISO-8601 UTC, signed with the plan
    sampler: str = SAMPLER
    step_rng: str = STEP_RNG
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    def digest(self) -> bytes:
        return hashlib.sha256(b"pol-plan-v1" + self.to_bytes()).digest()

    @cached_property
    def run_seed(self) -> int:
        return derive_run_seed(self.seed, self.signer, self.nonce)

    @property
    def accumulation(self) -> int:
        return int(self.step["accumulation"])

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.accumulation

    @property
    def num_checkpoints(self) -> int:
        """Checkpoint 0 is the initial state; then one every k steps, plus the last step."""
        return 1 + -(-self.num_steps // self.every)

    def checkpoint_step(self, i: int) -> int:
        return min(i * self.every, self.num_steps)

    def checkpoint_of_step(self, t: int) -> int:
        """The checkpoint whose segment contains step ``t`` (0-based)."""
        return t // self.every

    @property
    def is_legacy(self) -> bool:
        return isinstance(self.extra, dict) and bool(self.extra.get("legacy"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Plan":
        """Parse and validate stored plan bytes; only the canonical encoding is accepted, so
        that the plan digest (over :meth:`to_bytes`) is the digest of the stored bytes."""
        try:
            obj = parse_json(raw, "plan", ValueError)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ProofFormatError(f"plan is not valid JSON: {str(exc)[:120]}") from None
        if not isinstance(obj, dict):
            raise ProofFormatError("plan is not a JSON object")
        if obj.get("version") != PLAN_VERSION:
            raise ProofFormatError(f"unsupported plan version {obj.get('version')!r:.20} (this build reads {PLAN_VERSION})")
        try:
            plan = cls(**obj)
        except TypeError as exc:
            raise ProofFormatError(f"plan fields do not match this format: {str(exc)[:160]}") from None
        check(plan)
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
             "merkle_root": ((str,), True), "sample_digest": ((str,), True), "fields": ((list, _NONE), True)},
    "environment": {},
    "extra": {"codec": ((str,), False), "compact_anchor_every": ((int, _NONE), False)},
}
_CLOSED = {"model", "data"}   # objects whose keys are exactly the ones above
_JSON_NAMES = {str: "a string", dict: "an object", int: "an integer", list: "a list", _NONE: "null"}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(plan: Plan) -> None:
    """Validate a plan's fields (types, ranges, known keys); ProofFormatError otherwise."""
    ints = {"seed": plan.seed, "batch_size": plan.batch_size, "every": plan.every, "num_steps": plan.num_steps}
    for name, value in ints.items():
        if not _int(value):
            raise ProofFormatError(f"plan field {name} must be an integer, found {value!r:.40}")
    if not -2**63 <= plan.seed < 2**63:
        raise ProofFormatError("plan seed must fit in 64 bits")
    if not (0 < plan.batch_size <= MAX_SAMPLES and 0 < plan.every and 0 < plan.num_steps <= MAX_STEPS):
        raise ProofFormatError("plan batch_size, every and num_steps must be positive (and below 2^40)")
    if not isinstance(plan.step_digests, bool):
        raise ProofFormatError("plan field step_digests must be true or false")
    for name in ("signer", "created_at", "sampler", "step_rng", "nonce"):
        if not isinstance(getattr(plan, name), str):
            raise ProofFormatError(f"plan field {name} must be a string")
    if len(plan.signer) != 64 or not _HEX.match(plan.signer):
        raise ProofFormatError("plan signer must be 64 lowercase hex digits (an Ed25519 public key)")
    if not plan.is_legacy and (len(plan.nonce) != 32 or not _HEX.match(plan.nonce)):
        raise ProofFormatError("plan nonce must be 32 lowercase hex digits")
    if plan.is_legacy and not _HEX.match(plan.nonce):
        raise ProofFormatError("plan nonce must be hex")
    if not plan.is_legacy and (plan.sampler != SAMPLER or plan.step_rng != STEP_RNG):
        raise ProofFormatError("plan sampler and step_rng must name this version's rules")
    for name, fields in _SHAPES.items():
        obj = getattr(plan, name)
        if not isinstance(obj, dict):
            raise ProofFormatError(f"plan field {name} must be an object")
        if name in _CLOSED and not plan.is_legacy and set(obj) - set(fields):
            raise ProofFormatError(f"plan {name} has unknown fields {sorted(set(obj) - set(fields))[:4]}")
        for key, (types, required) in fields.items():
            if key not in obj:
                if required:
                    raise ProofFormatError(f"plan {name} lacks {key!r}")
            elif not isinstance(obj[key], types) or isinstance(obj[key], bool):
                raise ProofFormatError(f"plan {name}.{key} must be {' or '.join(_JSON_NAMES[t] for t in types)}, "
                                       f"found {obj[key]!r:.40}")
    if not 0 <= plan.data["num_samples"] <= MAX_SAMPLES:
        raise ProofFormatError("plan data.num_samples is out of range")
    fields = plan.data["fields"]
    if fields is not None and (len(fields) > 64 or not all(isinstance(f, str) and 0 < len(f) <= 128 for f in fields)):
        raise ProofFormatError("plan data.fields must be a list of at most 64 field names")
    if not plan.is_legacy and plan.num_steps * plan.samples_per_step > MAX_SAMPLES * 1024:
        raise ProofFormatError("plan steps x batch size is out of range")
    try:
        from pol import optimizers

        optimizers.validate(plan.optimizer)
        step_spec.validate(plan.step)
        schedule.validate(plan.lr_schedule, plan.num_steps)
    except PlanError as exc:
        raise ProofFormatError(f"plan: {exc}") from None
    for key, value in plan.environment.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ProofFormatError(f"plan environment.{key} is not finite")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
