"""The pipeline plan: what every node signs before step one (docs/SPLIT.md, "The pipeline plan").

A plan fixes the stages (which node holds which cut of the model, each stage's optimizer and
learning-rate schedule), each node's public key and recorded environment, the data
commitments (features by the data owner, labels by the label owner), the batch size, the
micro-batch schedule, k and the step count. Its canonical JSON bytes are what every node
signs; ``plan_digest`` (SHA-256 over a domain tag and those bytes) is the *pipeline id* that
every message header and every node's hash chain binds.

Stages and nodes: stage ``s`` is one cut of the model; node ``r`` is one party (one process).
Plain split (``labels_at = "last"``): node ``r`` holds stage ``r``, the last node owns the
labels. U-shaped split (``labels_at = "first"``): node 0 holds stage 0 *and* the head (the last
stage) and owns features and labels; nodes ``1..S-2`` hold the middle stages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pol import schedule as lr_schedules
from pol.errors import PlanError, ProofFormatError
from pol.hashing import canonical_json
from pol.smallfiles import parse_json

PLAN_FORMAT = "pol-split-plan"
PLAN_VERSION = 1
LABELS_AT = ("last", "first")
PIPELINE_SCHEDULE = "gpipe-fill-drain-v1"
SAMPLER = "epoch-permutation-v1/drop-last"
STEP_RNG = "torch.manual_seed(derive_seed(seed,'split-step',stage,t,micro_batch)) before each stage forward"
INIT_RNG = "torch.manual_seed(derive_seed(seed,'split-init',stage)) then build the stage on CPU"
FEATURE_DIGEST = "sha256/pol-split-feature-v1"
LABEL_DIGEST = "sha256/pol-split-label-v1"
_PLAN_DOMAIN = b"pol-split-plan-v1"


def node_of_stage(num_stages: int, labels_at: str) -> list[int]:
    """Node index of every stage: plain split ``[0, 1, .., S-1]``, U-shaped ``[0, 1, .., S-2, 0]``."""
    if labels_at not in LABELS_AT:
        raise PlanError(f"labels_at must be one of {LABELS_AT}, not {labels_at!r}")
    if num_stages < 2:
        raise PlanError("a pipeline needs at least 2 stages")
    if labels_at == "first":
        if num_stages < 3:
            raise PlanError("a U-shaped split (labels at the first node) needs at least 3 stages: "
                            "with 2, one node would hold the whole model")
        return [*range(num_stages - 1), 0]
    return list(range(num_stages))


@dataclass(frozen=True)
class PipelinePlan:
    """A pipeline plan. Build it with :func:`pol.split.planning.build_plan`; read stored bytes
    with :meth:`from_bytes` (validates everything: the bytes are untrusted)."""

    pipeline_nonce: str                  # 16 random bytes (hex) chosen by node 0: two runs never share an id
    created_at: str
    seed: int
    labels_at: str                       # "last" (plain split) or "first" (U-shaped)
    stages: list[dict[str, Any]]         # [{"index", "node", "module": {"spec", "kwargs"}, "optimizer", "lr_schedule"}]
    nodes: list[dict[str, Any]]          # [{"rank", "public_key" (hex), "stages", "environment"}]
    data: dict[str, Any]                 # {"spec", "kwargs", "num_samples", "features": {...}, "labels": {...}}
    loss: str
    batch_size: int
    micro_batches: int
    every: int
    num_steps: int
    codec: str = "delta-zstd"
    compact_anchor_every: int | None = None
    pipeline_schedule: str = PIPELINE_SCHEDULE
    sampler: str = SAMPLER
    step_rng: str = STEP_RNG
    init_rng: str = INIT_RNG
    format: str = PLAN_FORMAT
    version: int = PLAN_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -- identity ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    def digest(self) -> bytes:
        """The pipeline id: SHA-256("pol-split-plan-v1" || plan bytes)."""
        return hashlib.sha256(_PLAN_DOMAIN + self.to_bytes()).digest()

    # -- topology ---------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def stage_node(self, stage: int) -> int:
        return int(self.stages[stage]["node"])

    def node_stages(self, rank: int) -> list[int]:
        return [s for s in range(self.num_stages) if self.stage_node(s) == rank]

    def public_key(self, rank: int) -> bytes:
        return bytes.fromhex(self.nodes[rank]["public_key"])

    @property
    def data_owner(self) -> int:
        return int(self.data["features"]["owner"])

    @property
    def label_owner(self) -> int:
        return int(self.data["labels"]["owner"])

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.micro_batches

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def num_checkpoints(self) -> int:
        return 1 + -(-self.num_steps // self.every)

    def checkpoint_step(self, i: int) -> int:
        return min(i * self.every, self.num_steps)

    def segment_steps(self, segment: int) -> range:
        """Steps between checkpoint ``segment`` and ``segment + 1``."""
        return range(self.checkpoint_step(segment), self.checkpoint_step(segment + 1))

    def stored_checkpoint(self, i: int) -> bool:
        """Whether checkpoint ``i`` is stored whole (compact proofs store anchors, 0 and the last)."""
        k = self.compact_anchor_every
        return k is None or i % k == 0 or i == self.num_checkpoints - 1

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, raw: bytes) -> "PipelinePlan":
        """Parse and validate untrusted plan bytes; only the canonical encoding is accepted."""
        try:
            obj = parse_json(raw, "pipeline plan", ValueError)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProofFormatError(f"pipeline plan is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProofFormatError("pipeline plan is not a JSON object")
        if obj.get("format") != PLAN_FORMAT or obj.get("version") != PLAN_VERSION:
            raise ProofFormatError(f"not a {PLAN_FORMAT} version {PLAN_VERSION} plan "
                                   f"(found {obj.get('format')!r} version {obj.get('version')!r})")
        try:
            plan = cls(**obj)
        except TypeError as exc:
            raise ProofFormatError(f"pipeline plan fields do not match this format: {exc}") from None
        try:
            validate(plan)
        except PlanError as exc:
            raise ProofFormatError(f"pipeline plan: {exc}") from None
        try:
            canonical = plan.to_bytes() == bytes(raw)
        except ValueError:
            canonical = False
        if not canonical:
            raise ProofFormatError("pipeline plan is not canonical JSON (sorted keys, no whitespace, ASCII)")
        return plan


# -- validation -------------------------------------------------------------------------------

def _int(value: Any, name: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PlanError(f"{name} must be an integer >= {minimum}, found {value!r:.40}")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise PlanError(f"{name} must be a string, found {value!r:.40}")
    return value


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise PlanError(f"{name} must be an object, found {value!r:.40}")
    return value


def _hex(value: Any, name: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(_str(value, name))
    except ValueError:
        raise PlanError(f"{name} must be hex") from None
    if len(raw) != size:
        raise PlanError(f"{name} must be {size} bytes, found {len(raw)}")
    return raw


def _module_spec(value: Any, name: str) -> None:
    spec = _obj(value, name)
    _str(spec.get("spec"), f"{name}.spec")
    _obj(spec.get("kwargs"), f"{name}.kwargs")


def validate(plan: PipelinePlan) -> None:
    """Raise :class:`PlanError` unless the plan is internally consistent (types, topology, data)."""
    from pol.training import OPTIMIZERS, loss_function

    _hex(plan.pipeline_nonce, "pipeline_nonce", 16)
    for name in ("created_at", "loss", "codec", "pipeline_schedule", "sampler", "step_rng", "init_rng"):
        _str(getattr(plan, name), name)
    _int(plan.seed, "seed", -(2 ** 63))
    if plan.labels_at not in LABELS_AT:
        raise PlanError(f"labels_at must be one of {LABELS_AT}")
    for name in ("batch_size", "micro_batches", "every", "num_steps"):
        _int(getattr(plan, name), name, 1)
    if plan.batch_size % plan.micro_batches:
        raise PlanError(f"batch_size {plan.batch_size} is not a multiple of micro_batches {plan.micro_batches}")
    if plan.pipeline_schedule != PIPELINE_SCHEDULE or plan.sampler != SAMPLER \
            or plan.step_rng != STEP_RNG or plan.init_rng != INIT_RNG:
        raise PlanError("the plan names a schedule, sampler or seeding rule this build does not implement")
    if plan.codec not in ("delta-zstd", "raw"):
        raise PlanError(f"unknown codec {plan.codec!r}")
    if plan.compact_anchor_every is not None:
        _int(plan.compact_anchor_every, "compact_anchor_every", 1)
    loss_function(plan.loss)
    _obj(plan.extra, "extra")
    if "label_noise" in plan.extra:
        from pol.split.label_noise import validate_entry

        validate_entry(plan.extra["label_noise"])
    if not isinstance(plan.stages, list) or not isinstance(plan.nodes, list):
        raise PlanError("stages and nodes must be lists")
    expected = node_of_stage(len(plan.stages), plan.labels_at)
    for s, stage in enumerate(plan.stages):
        stage = _obj(stage, f"stages[{s}]")
        if stage.get("index") != s or stage.get("node") != expected[s]:
            raise PlanError(f"stages[{s}] must have index {s} and node {expected[s]} for labels_at={plan.labels_at!r}")
        _module_spec(stage.get("module"), f"stages[{s}].module")
        optimizer = _obj(stage.get("optimizer"), f"stages[{s}].optimizer")
        if optimizer.get("type") not in OPTIMIZERS:
            raise PlanError(f"stages[{s}].optimizer.type must be one of {OPTIMIZERS}")
        _obj(optimizer.get("hparams"), f"stages[{s}].optimizer.hparams")
        lr_schedules.validate(stage.get("lr_schedule"))
        sched = stage["lr_schedule"]
        if sched["kind"] == "table" and len(sched["values"]) < plan.num_steps:
            raise PlanError(f"stages[{s}] lr_schedule table is shorter than the run")
    num_nodes = max(expected) + 1
    if len(plan.nodes) != num_nodes:
        raise PlanError(f"{len(plan.stages)} stages with labels_at={plan.labels_at!r} need {num_nodes} nodes, "
                        f"the plan lists {len(plan.nodes)}")
    keys = set()
    for r, node in enumerate(plan.nodes):
        node = _obj(node, f"nodes[{r}]")
        if node.get("rank") != r:
            raise PlanError(f"nodes[{r}] must have rank {r}")
        keys.add(_hex(node.get("public_key"), f"nodes[{r}].public_key", 32))
        if node.get("stages") != [s for s, n in enumerate(expected) if n == r]:
            raise PlanError(f"nodes[{r}].stages does not match the stage assignment")
        _obj(node.get("environment"), f"nodes[{r}].environment")
    if len(keys) != len(plan.nodes):
        raise PlanError("two nodes share a public key: every node must sign with its own key")
    data = _obj(plan.data, "data")
    if data.get("spec") is not None:
        _str(data.get("spec"), "data.spec")
    _obj(data.get("kwargs"), "data.kwargs")
    _int(data.get("num_samples"), "data.num_samples", plan.batch_size)
    owners = {"features": (0, FEATURE_DIGEST), "labels": (expected[-1], LABEL_DIGEST)}
    for part, (owner, digest_rule) in owners.items():
        entry = _obj(data.get(part), f"data.{part}")
        if entry.get("owner") != owner or entry.get("sample_digest") != digest_rule:
            raise PlanError(f"data.{part} must be owned by node {owner} and use {digest_rule}")
        _hex(entry.get("merkle_root"), f"data.{part}.merkle_root", 32)
