"""The coordinator (rank 0): register the workers, sign a plan, and run the rounds. Each round
it sends the global model, collects round proofs until the round's deadline, judges them
(:mod:`pol.workers.admission`), aggregates only admitted updates, and logs everything."""

from __future__ import annotations

import json
import math
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pol.datacommit import sample_digests
from pol.envinfo import environment_fingerprint, exact_mismatches
from pol.hashing import contiguous, weights_digest
from pol.keys import load_signing_key, sign
from pol.merkle import merkle_root
from pol.plan import utc_now
from pol.schedule import validate as validate_schedule
from pol.tasks import get_task, load_data, seeded_weights
from pol.workers.admission import BASELINE_CHECKS, CHECKS, Admission, Gate
from pol.workers.aggregate import aggregate
from pol.workers.config import NodeConfig, RunSpec
from pol.workers.local import LocalTrainer
from pol.workers.log import LogWriter, submission_digest
from pol.workers.messages import WorkersFormatError, decode_frame, encode_frame, field as msg_field, hex_digest
from pol.workers.plan import PLAN_DOMAIN, FederatedPlan, WorkerEntry
from pol.workers.shards import assign_shards, shard_root
from pol.workers.transport import Network, PeerLost


@dataclass
class RunSummary:
    out: str
    aggregator: str
    seconds: float = 0.0
    judge_seconds: float = 0.0
    trained_worker_steps: int = 0
    replayed_worker_steps: int = 0
    submissions: list[dict[str, Any]] = field(default_factory=list)
    final_weights_digest: str = ""


def build_plan(spec: RunSpec, public_keys: dict[int, bytes], coordinator_key: bytes, device: str) -> FederatedPlan:
    task = get_task(spec.task)
    train = load_data(spec.task).train
    digests = sample_digests(train)
    ids = sorted(public_keys)
    shards = assign_shards(spec.seed, len(digests), len(ids))
    entries = [WorkerEntry(w, public_keys[w].hex(), shard.tolist(), shard_root(digests, shard).hex())
               for w, shard in zip(ids, shards)]
    schedule = validate_schedule({"kind": "constant", "lr": task.lr if spec.lr is None else spec.lr})
    return FederatedPlan(
        seed=spec.seed, model={"spec": task.name, "kwargs": {}},
        data={"spec": task.name, "kwargs": {}, "num_samples": len(digests), "merkle_root": merkle_root(digests).hex()},
        optimizer={"type": spec.optimizer or task.optimizer,
                   "hparams": dict(task.hparams if spec.hparams is None else spec.hparams)}, lr_schedule=schedule, loss=task.loss,
        batch_size=spec.batch_size, local_steps=spec.local_steps, rounds=spec.rounds,
        aggregation={"rule": spec.aggregator, "f": spec.f},
        verification={"replay_fraction": spec.replay_fraction, "exclusion": spec.exclusion,
                      "round_timeout_s": spec.round_timeout_s},
        workers=entries, coordinator=coordinator_key.hex(),
        initial_weights_digest=weights_digest(seeded_weights(task.name, {}, spec.seed)).hex(),
        environment=environment_fingerprint(device), created_at=utc_now())


def environment_problem(worker_env: Any, own: dict[str, Any]) -> str | None:
    """Why a worker's stack rules out bitwise replay on the coordinator's, or None."""
    if not isinstance(worker_env, dict):
        return "its hello names no environment"
    differs = exact_mismatches(own, worker_env)
    if differs:
        return (f"its stack differs from the coordinator's in {', '.join(differs)}; rounds could not replay "
                "bitwise (run every node on the same stack)")
    return None


def replay_sample(candidates: list[int], fraction: float, rng: secrets.SystemRandom) -> set[int]:
    """``ceil(fraction * k)`` of the ``k`` candidates, drawn with randomness no worker sees."""
    m = min(len(candidates), math.ceil(fraction * len(candidates) - 1e-9))
    return set(rng.sample(candidates, m))


class Coordinator:
    def __init__(self, net: Network, config: NodeConfig, device: str):
        self.net, self.config, self.device = net, config, device
        self.key = load_signing_key(config.coordinator_key)
        self.public_keys: dict[int, bytes] = {}
        self.lost: dict[int, str] = {}
        self._rng = secrets.SystemRandom()

    def say(self, msg: str) -> None:
        if self.config.verbose:
            print(f"[coordinator] {msg}", file=sys.stderr, flush=True)

    # -- messaging -----------------------------------------------------------------------------
    def _send(self, worker: int, data: bytes, timeout_s: float) -> bool:
        try:
            self.net.channels[worker].send(data, timeout_s)
            return True
        except PeerLost as exc:
            self._lose(worker, str(exc))
            return False

    def _lose(self, worker: int, reason: str) -> None:
        self.lost.setdefault(worker, reason)
        self.say(f"worker {worker} lost: {reason}")

    def register(self) -> None:
        own = environment_fingerprint(self.device)
        for w, chan in sorted(self.net.channels.items()):
            try:
                header, _ = decode_frame(chan.recv(self.config.idle_timeout_s, 1 << 20))
                if header.get("type") != "hello" or msg_field(header, "worker", int) != w:
                    raise WorkersFormatError("the first message is not this worker's hello")
                key = hex_digest(header, "public_key")
                problem = environment_problem(header.get("environment"), own)
                if problem:
                    self._send(w, encode_frame({"type": "shutdown", "reason": problem}), 30.0)
                    raise WorkersFormatError(problem)
                self.public_keys[w] = key
            except (PeerLost, WorkersFormatError) as exc:
                self._lose(w, f"registration failed: {exc}")

    def shutdown(self) -> None:
        for w in sorted(self.net.channels):
            if w not in self.lost:
                self._send(w, encode_frame({"type": "shutdown"}), 30.0)

    # -- one run -------------------------------------------------------------------------------
    def run(self, index: int, spec: RunSpec) -> RunSummary:
        started = time.perf_counter()
        keys = {w: k for w, k in self.public_keys.items() if w not in self.lost}
        plan = build_plan(spec, keys, bytes(self.key.verify_key), self.device)
        plan_sig = sign(self.key, PLAN_DOMAIN, plan.to_bytes())
        log = LogWriter(spec.out, plan, plan_sig, self.key, overwrite=self.config.overwrite)
        summary = RunSummary(spec.out, spec.aggregator)
        try:
            plan_msg = encode_frame({"type": "plan", "run": index, "plan": plan.to_bytes().decode("ascii"),
                                     "signature": plan_sig.hex()})
            for w in plan.worker_ids:
                if w not in self.lost:
                    self._send(w, plan_msg, spec.round_timeout_s)
            trainer = LocalTrainer(plan, load_data(spec.task).train, self.device)
            gate = Gate(plan, trainer)
            weights = seeded_weights(plan.model["spec"], plan.model["kwargs"], plan.seed)
            banned: dict[int, str] = {}
            for r in range(plan.rounds):
                weights = self._round(index, r, plan, gate, weights, banned, log, summary)
            digest = weights_digest(weights)
            from safetensors.numpy import save

            log.finish(digest, save({k: contiguous(v) for k, v in weights.items()}))
            summary.final_weights_digest = digest.hex()
        finally:
            log.close()
        for w in plan.worker_ids:
            if w not in self.lost:
                self._send(w, encode_frame({"type": "end-run", "run": index}), spec.round_timeout_s)
        summary.seconds = time.perf_counter() - started
        return summary

    def _round(self, index: int, r: int, plan: FederatedPlan, gate: Gate, weights: dict[str, np.ndarray],
               banned: dict[int, str], log: LogWriter, summary: RunSummary) -> dict[str, np.ndarray]:
        timeout = float(plan.verification["round_timeout_s"])
        digest = weights_digest(weights)
        entries: dict[int, dict[str, Any]] = {}
        for w in plan.worker_ids:
            if w in banned or w in self.lost:
                entries[w] = {"worker": w, "status": "excluded", "reason": banned.get(w) or self.lost[w]}
        message = encode_frame({"type": "round", "run": index, "round": r, "global_digest": digest.hex()}, weights)
        participants = [w for w in plan.worker_ids if w not in entries and self._send(w, message, timeout)]
        received: dict[int, bytes] = {}
        deadline = time.monotonic() + timeout
        for w in participants:
            try:
                received[w] = self.net.channels[w].recv(max(0.05, deadline - time.monotonic()),
                                                        self.config.max_message_bytes)
            except PeerLost as exc:
                self._lose(w, str(exc))
        for w in plan.worker_ids:
            if w not in entries and w not in received:
                entries[w] = {"worker": w, "status": "missing", "reason": self.lost.get(w, "no submission")}
        t0 = time.perf_counter()
        rule = plan.aggregation["rule"]
        verified = rule == "replay_verified"
        to_replay = replay_sample(sorted(received), plan.replay_fraction, self._rng) if verified else set()
        verdicts: dict[int, Admission] = {}
        for w, raw in sorted(received.items()):
            verdicts[w] = gate.judge(raw, w, r, weights, digest, checks=CHECKS if verified else BASELINE_CHECKS,
                                     replay=w in to_replay)
            summary.replayed_worker_steps += plan.local_steps if verdicts[w].replayed else 0
        summary.trained_worker_steps += plan.local_steps * len(received)
        accepted = [(w, v.proof.tensors) for w, v in verdicts.items() if v.accepted and v.proof is not None]
        result = aggregate(rule, weights, accepted, int(plan.aggregation["f"]))
        summary.judge_seconds += time.perf_counter() - t0
        for w, v in verdicts.items():
            entries[w] = {"worker": w, "status": "accepted" if v.accepted else "rejected",
                          "digest": submission_digest(received[w]), "check": v.check, "reason": v.reason,
                          "replayed": v.replayed, "evidence": v.evidence}
            summary.submissions.append({"round": r, "worker": w, "status": entries[w]["status"], "check": v.check,
                                        "replayed": v.replayed})
            if not v.accepted and plan.verification["exclusion"] == "ban":
                banned[w] = f"banned in round {r}: {v.check}: {v.reason}"
        for w, e in entries.items():
            if e["status"] in ("missing", "excluded") and not any(s["round"] == r and s["worker"] == w
                                                                    for s in summary.submissions):
                summary.submissions.append({"round": r, "worker": w, "status": e["status"], "check": None,
                                            "replayed": False})
        new_digest = weights_digest(result.weights)
        replay_note = {"replayed": len(to_replay), "of": len(received),
                       "detection_probability": round(len(to_replay) / len(received), 6) if received else None}
        log.write_round({"global_in": digest.hex(), "global_out": new_digest.hex(), "replay": replay_note,
                         "submissions": [entries[w] for w in plan.worker_ids],
                         "aggregation": {"rule": rule, "inputs": result.inputs, "selected": result.selected},
                         "excluded_after": sorted(set(banned) | (set(self.lost) & set(plan.worker_ids)))},
                        received)
        for w, v in verdicts.items():
            if w in banned and not v.accepted and w not in self.lost:
                self._send(w, encode_frame({"type": "excluded", "run": index, "reason": banned[w]}), timeout)
        rejected = [f"{w} ({v.check})" for w, v in verdicts.items() if not v.accepted]
        self.say(f"run {index} round {r}: accepted {[w for w, _ in accepted]}"
                 + (f", rejected {', '.join(rejected)}" if rejected else "")
                 + (f", missing {[w for w, e in entries.items() if e['status'] == 'missing']}"
                    if any(e["status"] == "missing" for e in entries.values()) else ""))
        return result.weights


def serve(net: Network, config: NodeConfig, device: str) -> list[RunSummary]:
    coordinator = Coordinator(net, config, device)
    coordinator.register()
    summaries = []
    try:
        for i, spec in enumerate(config.runs):
            summaries.append(coordinator.run(i, spec))
            if config.summary:
                with open(config.summary, "w") as fh:
                    json.dump({"runs": [s.__dict__ for s in summaries], "lost": coordinator.lost}, fh, indent=1)
    finally:
        coordinator.shutdown()
    return summaries
