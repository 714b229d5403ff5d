"""A worker process (rank w >= 1): register, then for every run check the plan against its own
data and key, and answer each round with what its behaviour returns."""

from __future__ import annotations

import sys
from typing import Any

from pol.datacommit import sample_digests
from pol.errors import InputError
from pol.hashing import weights_digest
from pol.keys import load_signing_key, verify_signature
from pol.merkle import merkle_root
from pol.tasks import load_data
from pol.workers.behaviour import RoundContext, load_behaviour
from pol.workers.config import NodeConfig
from pol.workers.local import LocalTrainer
from pol.workers.messages import decode_frame, encode_frame, field, hex_digest
from pol.workers.plan import PLAN_DOMAIN, FederatedPlan
from pol.workers.shards import shard_root
from pol.workers.transport import Network


def _say(rank: int, msg: str) -> None:
    print(f"[worker {rank}] {msg}", file=sys.stderr, flush=True)


def check_plan(plan: FederatedPlan, signature: bytes, rank: int, public_key: bytes, dataset: Any) -> None:
    """An honest worker trains only under a plan that commits its own key and the data it holds."""
    verify_signature(bytes.fromhex(plan.coordinator), PLAN_DOMAIN, plan.to_bytes(), signature)
    entry = plan.worker(rank)
    if entry.public_key != public_key.hex():
        raise InputError(f"the plan registers another key for worker {rank}")
    digests = sample_digests(dataset)
    if merkle_root(digests).hex() != plan.data["merkle_root"]:
        raise InputError("the plan's data commitment does not match the data this worker holds")
    if shard_root(digests, entry.shard).hex() != entry.shard_root:
        raise InputError(f"the plan's shard root for worker {rank} does not match its shard")


def serve(net: Network, config: NodeConfig, device: str) -> None:
    rank, chan = net.rank, net.channels[0]
    key = load_signing_key(config.worker_keys.format(rank=rank))
    from pol.envinfo import environment_fingerprint

    chan.send(encode_frame({"type": "hello", "worker": rank, "public_key": bytes(key.verify_key).hex(),
                            "environment": environment_fingerprint(device)}), config.idle_timeout_s)
    trainer: LocalTrainer | None = None
    plan: FederatedPlan | None = None
    memory: dict[str, Any] = {}
    behaviour = None
    while True:
        header, tensors = decode_frame(chan.recv(config.idle_timeout_s, config.max_message_bytes))
        kind = header.get("type")
        if kind == "shutdown":
            if header.get("reason"):
                raise InputError(f"the coordinator refused this worker: {str(header['reason'])[:200]}")
            return
        if kind == "plan":
            plan = FederatedPlan.from_bytes(field(header, "plan", str).encode("ascii"))
            spec = config.runs[field(header, "run", int)]
            data = load_data(spec.task).train
            check_plan(plan, hex_digest(header, "signature", size=64), rank, bytes(key.verify_key), data)
            trainer, memory = LocalTrainer(plan, data, device), {}
            behaviour = load_behaviour(spec.behaviour_of(rank), config.behaviour_module)
        elif kind == "round" and plan is not None and trainer is not None and behaviour is not None:
            digest = hex_digest(header, "global_digest")
            if weights_digest(tensors) != digest:
                raise InputError("the coordinator's global model does not match its digest")
            ctx = RoundContext(plan, rank, field(header, "round", int), tensors, digest, trainer, key, memory)
            proof = behaviour(ctx)
            if proof is not None:
                chan.send(proof, config.idle_timeout_s)
        elif kind == "excluded":
            if config.verbose:
                _say(rank, f"excluded from run {header.get('run')}: {header.get('reason')}")
        elif kind == "end-run":
            plan, trainer, behaviour = None, None, None
        else:
            raise InputError(f"unexpected message from the coordinator: {kind!r:.40}")
