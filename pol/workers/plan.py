"""The federated run's plan: everything a worker, the coordinator and a third party need,
signed by the coordinator before round one (docs/WORKERS.md, "Plan")."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pol import schedule
from pol.errors import PlanError
from pol.hashing import canonical_json, tagged_hash
from pol.training import OPTIMIZERS
from pol.workers.messages import WorkersFormatError, field
from pol.smallfiles import parse_json

PLAN_FORMAT = "pol-workers-plan-v1"
PLAN_DOMAIN = b"pol-workers-plan-v1"
RULES = ("replay_verified", "fedavg", "median", "trimmed_mean", "krum")
EXCLUSIONS = ("ban", "drop")


@dataclass(frozen=True)
class WorkerEntry:
    id: int                 # the worker's rank, 1..N
    public_key: str         # hex Ed25519 key, registered before the plan was signed
    shard: list[int]        # data set indices, ascending
    shard_root: str         # hex Merkle root over the shard's sample digests, in that order


@dataclass(frozen=True)
class FederatedPlan:
    seed: int
    model: dict[str, Any]           # {"spec", "kwargs"}
    data: dict[str, Any]            # {"spec", "kwargs", "num_samples", "merkle_root"}
    optimizer: dict[str, Any]       # {"type", "hparams"}: a fresh optimizer every round
    lr_schedule: dict[str, Any]     # indexed by the worker step t = round * local_steps + s
    loss: str
    batch_size: int
    local_steps: int
    rounds: int
    aggregation: dict[str, Any]     # {"rule": one of RULES, "f": assumed malicious count}
    verification: dict[str, Any]    # {"replay_fraction", "exclusion", "round_timeout_s"}
    workers: list[WorkerEntry]
    coordinator: str                # hex Ed25519 key of the coordinator
    initial_weights_digest: str     # weights_digest of the seeded model
    environment: dict[str, Any]
    created_at: str
    format: str = PLAN_FORMAT

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    def digest(self) -> bytes:
        return tagged_hash(PLAN_DOMAIN, self.to_bytes())

    @property
    def worker_ids(self) -> list[int]:
        return [w.id for w in self.workers]

    def worker(self, worker_id: int) -> WorkerEntry:
        for w in self.workers:
            if w.id == worker_id:
                return w
        raise WorkersFormatError(f"worker {worker_id} is not in the plan")

    @property
    def replay_fraction(self) -> float:
        return float(self.verification["replay_fraction"])

    @classmethod
    def from_bytes(cls, raw: bytes) -> "FederatedPlan":
        """Parse and validate plan bytes (untrusted); only the canonical encoding is accepted."""
        try:
            obj = parse_json(bytes(raw), "plan", ValueError)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WorkersFormatError(f"plan is not JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.get("format") != PLAN_FORMAT:
            raise WorkersFormatError(f"not a {PLAN_FORMAT} plan")
        workers = field(obj, "workers", list, "plan")
        entries = []
        for i, w in enumerate(workers):
            if not isinstance(w, dict) or set(w) != {"id", "public_key", "shard", "shard_root"}:
                raise WorkersFormatError(f"plan worker entry {i} must have id, public_key, shard, shard_root")
            shard = field(w, "shard", list, "plan worker")
            if not all(isinstance(j, int) and not isinstance(j, bool) for j in shard):
                raise WorkersFormatError(f"plan worker entry {i}: shard must list integer indices")
            entries.append(WorkerEntry(field(w, "id", int, "plan worker"), field(w, "public_key", str, "plan worker"),
                                       shard, field(w, "shard_root", str, "plan worker")))
        try:
            plan = cls(**{**obj, "workers": entries})
        except TypeError as exc:
            raise WorkersFormatError(f"plan fields do not match {PLAN_FORMAT}: {exc}") from None
        _validate(plan)
        if plan.to_bytes() != bytes(raw):
            raise WorkersFormatError("plan is not canonical JSON (sorted keys, no whitespace, every field)")
        return plan


def _validate(plan: FederatedPlan) -> None:
    obj = asdict(plan)
    for name in ("seed", "batch_size", "local_steps", "rounds"):
        field(obj, name, int, "plan")
    if min(plan.batch_size, plan.local_steps, plan.rounds) <= 0:
        raise WorkersFormatError("plan batch_size, local_steps and rounds must be positive")
    for name in ("loss", "coordinator", "initial_weights_digest", "created_at"):
        field(obj, name, str, "plan")
    for name in ("model", "data", "optimizer", "lr_schedule", "aggregation", "verification", "environment"):
        field(obj, name, dict, "plan")
    field(plan.model, "spec", str, "plan model")
    field(plan.model, "kwargs", dict, "plan model")
    field(plan.data, "kwargs", dict, "plan data")
    field(plan.data, "merkle_root", str, "plan data")
    if field(plan.data, "num_samples", int, "plan data") <= 0:
        raise WorkersFormatError("plan data.num_samples must be positive")
    if field(plan.optimizer, "type", str, "plan optimizer") not in OPTIMIZERS:
        raise WorkersFormatError(f"plan optimizer must be one of {', '.join(OPTIMIZERS)}")
    field(plan.optimizer, "hparams", dict, "plan optimizer")
    try:
        schedule.validate(plan.lr_schedule)
    except PlanError as exc:
        raise WorkersFormatError(f"plan lr_schedule: {exc}") from None
    if field(plan.aggregation, "rule", str, "plan aggregation") not in RULES:
        raise WorkersFormatError(f"plan aggregation rule must be one of {', '.join(RULES)}")
    if field(plan.aggregation, "f", int, "plan aggregation") < 0:
        raise WorkersFormatError("plan aggregation f must not be negative")
    fraction = field(plan.verification, "replay_fraction", (int, float), "plan verification")
    if not (math.isfinite(fraction) and 0 <= fraction <= 1):
        raise WorkersFormatError("plan verification replay_fraction must lie in [0, 1]")
    if field(plan.verification, "exclusion", str, "plan verification") not in EXCLUSIONS:
        raise WorkersFormatError(f"plan verification exclusion must be one of {', '.join(EXCLUSIONS)}")
    field(plan.verification, "round_timeout_s", (int, float), "plan verification")
    ids = plan.worker_ids
    if not ids or ids != sorted(set(ids)) or ids[0] < 1:
        raise WorkersFormatError("plan workers must be listed by ascending, distinct ids from 1")
    for w in plan.workers:
        if any(not 0 <= i < plan.data["num_samples"] for i in w.shard) or w.shard != sorted(set(w.shard)):
            raise WorkersFormatError(f"plan worker {w.id}: shard indices must be distinct, ascending, in range")
        if len(w.shard) < plan.batch_size:
            raise WorkersFormatError(f"plan worker {w.id}: shard of {len(w.shard)} is smaller than a batch")
