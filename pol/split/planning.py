"""Agreeing on the pipeline plan before step one.

Every node is started with the same :class:`SplitConfig` (what its operator asked for). The
nodes then:

1. exchange *contributions* (all-gather of canonical JSON): each node's public key and recorded
   environment; the data owner's feature commitment, the label owner's label commitment;
2. node 0 picks a random pipeline nonce and the date, builds the plan and broadcasts its bytes;
3. every node rebuilds the plan itself from its own config, the contributions and node 0's
   nonce and date, and refuses to sign anything else; it also refuses a plan naming a key that
   is not among its trusted public keys;
4. every node signs the plan bytes; the signatures are all-gathered and every node checks all
   of them under the plan's keys. Only then does training start.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pol.errors import InputError, PlanError
from pol.hashing import canonical_json
from pol.keys import PUBLIC_HEADER, fingerprint, sign
from pol.split.messages import MessageRejected
from pol.split.plan import FEATURE_DIGEST, LABEL_DIGEST, PipelinePlan, node_of_stage, validate
from pol.split.stages import builtin_stage_counts, builtin_stage_spec
from pol.smallfiles import parse_json

PLAN_SIGNATURE_DOMAIN = b"pol-split-plan-sig-v1"


@dataclass(frozen=True)
class SplitConfig:
    """What a node's operator asks for; every node of a run must be given the same values."""

    task: str = "digits-mlp"
    stages: int = 3
    labels_at: str = "last"
    seed: int = 0
    steps: int | None = None
    epochs: int | None = None
    every: int = 10
    micro_batches: int = 2
    batch_size: int | None = None
    lr: float | None = None
    schedule: str = "constant"
    codec: str = "delta-zstd"
    compact: int | None = None
    stage_modules: tuple[str, ...] = ()
    stage_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    label_noise: str | None = None        # "iso[:RATIO]" or "max_norm": pol.split.label_noise

    @property
    def num_nodes(self) -> int:
        return max(node_of_stage(self.stages, self.labels_at)) + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SplitConfig":
        obj = json.loads(text)
        obj["stage_modules"] = tuple(obj.get("stage_modules", ()))
        return cls(**obj)


def _task_defaults(config: SplitConfig) -> tuple[str, dict[str, Any], float, int]:
    """(optimizer type, hparams, lr, batch size) for the config's task."""
    from pol.tasks import TASKS

    task = TASKS.get(config.task)
    optimizer, hparams, lr, batch = ("SGD", {"momentum": 0.9}, 0.05, 32) if task is None else \
        (task.optimizer, dict(task.hparams), task.lr, task.batch_size)
    return optimizer, hparams, config.lr if config.lr is not None else lr, config.batch_size or batch


def data_spec(config: SplitConfig) -> str:
    return config.data or config.task


def num_steps(config: SplitConfig, num_samples: int) -> int:
    batch = _task_defaults(config)[3]
    if config.steps is not None:
        return config.steps
    return (config.epochs or 1) * (num_samples // batch)


def stage_specs(config: SplitConfig) -> list[str]:
    if config.stage_modules:
        if len(config.stage_modules) != config.stages:
            raise PlanError(f"{len(config.stage_modules)} stage modules named for {config.stages} stages")
        return list(config.stage_modules)
    if config.stages not in builtin_stage_counts(config.task):
        raise PlanError(f"{config.task} has built-in splits into {builtin_stage_counts(config.task)} stages, "
                        f"not {config.stages}")
    return [builtin_stage_spec(config.task, s, config.stages) for s in range(config.stages)]


def check_config(config: SplitConfig) -> None:
    """Refuse, before any process starts, options no plan can be built from (PlanError)."""
    from pol.split.label_noise import parse_option

    node_of_stage(config.stages, config.labels_at)
    stage_specs(config)
    parse_option(config.label_noise)
    batch = _task_defaults(config)[3]
    if config.micro_batches < 1 or batch % config.micro_batches:
        raise PlanError(f"--micro-batches {config.micro_batches} must divide the batch size {batch}")
    for name in ("every", "steps", "epochs", "compact"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise PlanError(f"--{name} must be at least 1")


# -- contributions --------------------------------------------------------------------------

def contribution(config: SplitConfig, rank: int, public_key: bytes, environment: dict[str, Any],
                 features: Any | None, labels: Any | None, label_noise_commitment: str | None = None) -> bytes:
    """This node's part of the plan: key, environment, and the commitments it owns (the label
    owner also commits its label-noise secret when the run adds label noise)."""
    from pol.split.data import feature_root, label_root

    entry: dict[str, Any] = {"rank": rank, "public_key": public_key.hex(), "environment": environment}
    if features is not None:
        entry["features"] = {"merkle_root": feature_root(features).hex(), "num_samples": int(features.shape[0])}
    if labels is not None:
        entry["labels"] = {"merkle_root": label_root(labels).hex(), "num_samples": int(labels.shape[0])}
    if label_noise_commitment is not None:
        entry["label_noise_commitment"] = label_noise_commitment
    return canonical_json(entry)


def parse_contributions(raw: list[bytes], config: SplitConfig) -> list[dict[str, Any]]:
    """Validate the (untrusted) contributions of every node."""
    owners = node_of_stage(config.stages, config.labels_at)
    out = []
    for r, blob in enumerate(raw):
        try:
            entry = parse_json(blob, "plan contribution", ValueError)
            ok = isinstance(entry, dict) and entry.get("rank") == r and isinstance(entry.get("environment"), dict) \
                and len(bytes.fromhex(entry.get("public_key", ""))) == 32
            for part, owner in (("features", 0), ("labels", owners[-1])):
                if (part in entry) != (r == owner):
                    ok = False
                elif part in entry:
                    ok = ok and len(bytes.fromhex(entry[part]["merkle_root"])) == 32 \
                        and isinstance(entry[part]["num_samples"], int)
            noise = entry.get("label_noise_commitment")
            if (noise is not None) != (bool(config.label_noise) and r == owners[-1]):
                ok = False
            elif noise is not None:
                ok = ok and len(bytes.fromhex(noise)) == 32
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise MessageRejected(f"node {r} sent a malformed plan contribution; the run stops")
        out.append(entry)
    return out


def build_plan(config: SplitConfig, contributions: list[dict[str, Any]], nonce: str, created_at: str) -> PipelinePlan:
    """The plan every node must agree on (a pure function of its inputs)."""
    from pol.split.label_noise import parse_option, plan_entry

    owners = node_of_stage(config.stages, config.labels_at)
    features, labels = contributions[0]["features"], contributions[owners[-1]]["labels"]
    if features["num_samples"] != labels["num_samples"]:
        raise PlanError(f"the data owner holds {features['num_samples']} samples, the label owner "
                        f"{labels['num_samples']}: they must hold the same samples in the same order")
    optimizer, hparams, lr, batch = _task_defaults(config)
    steps = num_steps(config, features["num_samples"])
    lr_schedule: dict[str, Any] = {"kind": "constant", "lr": lr}
    if config.schedule == "cosine":
        lr_schedule = {"kind": "cosine", "lr": lr, "min_lr": 0.0, "total_steps": steps}
    specs = stage_specs(config)
    stages = [{"index": s, "node": owners[s], "module": {"spec": specs[s], "kwargs": dict(config.stage_kwargs)},
               "optimizer": {"type": optimizer, "hparams": hparams}, "lr_schedule": lr_schedule}
              for s in range(config.stages)]
    nodes = [{"rank": r, "public_key": c["public_key"], "environment": c["environment"],
              "stages": [s for s in range(config.stages) if owners[s] == r]} for r, c in enumerate(contributions)]
    data = {"spec": data_spec(config), "kwargs": dict(config.data_kwargs), "num_samples": features["num_samples"],
            "features": {"owner": 0, "merkle_root": features["merkle_root"], "sample_digest": FEATURE_DIGEST},
            "labels": {"owner": owners[-1], "merkle_root": labels["merkle_root"], "sample_digest": LABEL_DIGEST}}
    extra: dict[str, Any] = {}
    noise = parse_option(config.label_noise)
    if noise is not None:
        extra["label_noise"] = plan_entry(*noise, contributions[owners[-1]]["label_noise_commitment"])
    plan = PipelinePlan(pipeline_nonce=nonce, created_at=created_at, seed=config.seed, labels_at=config.labels_at,
                        stages=stages, nodes=nodes, data=data, loss="cross_entropy", batch_size=batch,
                        micro_batches=config.micro_batches, every=config.every, num_steps=steps, codec=config.codec,
                        compact_anchor_every=config.compact, extra=extra)
    validate(plan)
    return plan


def trusted_public_keys(keys_dir: str | Path) -> dict[bytes, str]:
    """Public keys in ``keys_dir/*.pub`` -> file name: the keys this node's operator trusts."""
    from pol.keys import load_verify_key

    out = {}
    for path in sorted(Path(keys_dir).glob("*.pub")):
        try:
            head = path.read_text(encoding="ascii").split("\n", 1)[0].strip()
        except (OSError, UnicodeDecodeError):
            continue
        if head == PUBLIC_HEADER:
            out[bytes(load_verify_key(path))] = path.name
    return out


def check_trusted(plan: PipelinePlan, trusted: dict[bytes, str], keys_dir: str | Path) -> None:
    for r in range(plan.num_nodes):
        if plan.public_key(r) not in trusted:
            raise PlanError(f"node {r}'s key {fingerprint(plan.public_key(r))[:16]} is not among the trusted "
                            f"public keys in {keys_dir}; refusing to sign the plan")


def sign_plan(plan_bytes: bytes, key: Any) -> bytes:
    return sign(key, PLAN_SIGNATURE_DOMAIN, plan_bytes)


def plan_signature_valid(plan_bytes: bytes, public_key: bytes, signature: bytes) -> bool:
    from pol.errors import BadSignatureError
    from pol.keys import verify_signature

    try:
        verify_signature(public_key, PLAN_SIGNATURE_DOMAIN, plan_bytes, signature)
    except BadSignatureError:
        return False
    return True


@dataclass(frozen=True)
class AgreedPlan:
    plan: PipelinePlan
    plan_bytes: bytes
    signatures: list[bytes]


def agree_plan(config: SplitConfig, rank: int, key: Any, environment: dict[str, Any], features: Any | None,
               labels: Any | None, device: str, keys_dir: str | Path | None,
               approve: Callable[[PipelinePlan], None] | None = None,
               label_noise_commitment: str | None = None) -> AgreedPlan:
    """Run the plan protocol above over the process group (every rank calls it).

    ``approve(plan)`` runs on every node after its own checks and before it signs; raising
    refuses the plan (the seam for attesting nodes before the plan is signed)."""
    from pol.plan import utc_now
    from pol.split.comm import all_gather_bytes, broadcast_bytes

    own = contribution(config, rank, bytes(key.verify_key), environment, features, labels, label_noise_commitment)
    contributions = parse_contributions(all_gather_bytes(own, device), config)
    proposed = None
    if rank == 0:
        proposed = build_plan(config, contributions, secrets.token_hex(16), utc_now()).to_bytes()
    plan_bytes = broadcast_bytes(proposed, 0, device)
    try:
        plan = PipelinePlan.from_bytes(plan_bytes)
    except InputError as exc:
        raise MessageRejected(f"node 0 proposed a malformed plan ({exc}); node {rank} refuses to sign it") from None
    expected = build_plan(config, contributions, plan.pipeline_nonce, plan.created_at).to_bytes()
    if expected != plan_bytes:
        raise PlanError(f"node {rank} refuses to sign the plan node 0 proposed: it differs from the plan node {rank}'s "
                        "own configuration and the nodes' contributions give (were all nodes started with the same "
                        "options?)")
    if keys_dir is not None:
        check_trusted(plan, trusted_public_keys(keys_dir), keys_dir)
    if approve is not None:
        approve(plan)
    signatures = all_gather_bytes(sign_plan(plan_bytes, key), device)
    for r, sig in enumerate(signatures):
        if len(sig) != 64 or not plan_signature_valid(plan_bytes, plan.public_key(r), sig):
            raise MessageRejected(f"node {r}'s plan signature does not verify under its plan key; the run stops")
    return AgreedPlan(plan, plan_bytes, signatures)

