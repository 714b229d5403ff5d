"""Attacks on a split-learning pipeline, each run for real and judged (docs/SPLIT.md, Attacks).

Runtime attacks start the pipeline's processes with one or two dishonest nodes
(:mod:`scripts.attacks_split.nodes`); after-the-fact attacks rewrite one node's proof of an
honest run with that node's key (:mod:`scripts.attacks_split.forgery`). Every attack names the
node(s) that must be blamed and the check(s) that must blame them::

    from scripts.attacks_split import ATTACKS, run_attack
    outcome = run_attack(ATTACKS["poison-activations"], workdir, keys_dir, honest_run=None)
    outcome.detected, outcome.blamed_correctly      # True, True
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ATTACK_NODES = "scripts.attacks_split.nodes"
# The small pipeline every attack runs on: 3 stages of digits-mlp, 20 steps, k=5 (4 segments).
BASE_ARGS = ["--task", "digits-mlp", "--stages", "3", "--steps", "20", "--every", "5", "--micro-batches", "2"]


@dataclass(frozen=True)
class SplitAttack:
    name: str
    description: str
    blamed: frozenset[int]
    checks: dict[int, frozenset[str]] = field(default_factory=dict)   # blamed node -> checks that must fail
    nodes: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # rank -> (runtime class, kwargs)
    posthoc: Callable[[Path, Path, Path], Path] | None = None         # (run, out dir, keys dir) -> run to verify
    stops_run: bool = False                                           # caught while training
    outsider_key: int | None = None                                   # this rank signs with a key not in --keys
    must_pass: dict[int, frozenset[str]] = field(default_factory=dict)  # checks that pass (what is NOT caught)


def _impl(name: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    return f"{ATTACK_NODES}:{name}", kwargs


def _interpolate(run: Path, out: Path, keys: Path) -> Path:
    from pol.keys import load_signing_key
    from scripts.attacks_split.forgery import interpolation

    return interpolation(run, out, 1, load_signing_key(keys / "node1.key"))


def _collude(run: Path, out: Path, keys: Path) -> Path:
    from pol.keys import load_signing_key
    from scripts.attacks_split.forgery import collusion_rewrite

    return collusion_rewrite(run, out, 1, 2, load_signing_key(keys / "node2.key"), run / "colluders-stash.npz")


def _resign(run: Path, out: Path, keys: Path) -> Path:
    from nacl.signing import SigningKey

    from scripts.attacks_split.forgery import resign_with

    return resign_with(run, out, 1, SigningKey.generate())


ATTACKS: dict[str, SplitAttack] = {a.name: a for a in (
    SplitAttack("lazy-node", "node 1 skips every update and fabricates checkpoints showing progress",
                frozenset({1}), {1: frozenset({"replay"})}, nodes={1: _impl("LazyNode")}),
    SplitAttack("poison-activations", "node 1 sends negated activations, signed, and records them",
                frozenset({1}), {1: frozenset({"replay"})}, nodes={1: _impl("PoisonNode", direction="activation")}),
    SplitAttack("poison-gradients", "node 2 (label owner) sends negated gradients, signed, and records them",
                frozenset({2}), {2: frozenset({"replay"})}, nodes={2: _impl("PoisonNode", direction="gradient")}),
    SplitAttack("phantom-digests", "node 1 sends negated activations but records digests of the honest ones, "
                "which it never sent", frozenset({1}), {1: frozenset({"sent_consistency"})},
                nodes={1: _impl("PhantomDigestNode", direction="activation")}),
    SplitAttack("key-not-in-plan", "node 2 joins with a key its partners do not trust",
                frozenset({2}), stops_run=True, outsider_key=2),
    SplitAttack("replaced-mid-run", "from step 3 on, another party with another key signs node 1's messages",
                frozenset({1}), stops_run=True, nodes={1: _impl("ReplacedNode", at_step=3)}),
    SplitAttack("tampered-in-transit", "node 1 signs the digest of its activation but another tensor arrives",
                frozenset({1}), stops_run=True, nodes={1: _impl("CorruptInTransitNode", at_step=2)}),
    SplitAttack("resigned-proof", "node 1's proof is signed by a key that is not its plan key",
                frozenset({1}), {1: frozenset({"signer", "final_signature"})}, posthoc=_resign),
    SplitAttack("collusion-fake-exchange", "nodes 1 and 2 exchange noise instead of activations and gradients and "
                "both record it: their transcripts agree", frozenset({1, 2}),
                {1: frozenset({"replay"}), 2: frozenset({"replay"})},
                nodes={1: _impl("PoisonNode", direction="activation", scale=0.0, noise=1.0),
                       2: _impl("PoisonNode", direction="gradient", scale=0.0, noise=1.0)},
                must_pass={1: frozenset({"sent_consistency", "received_signatures"}),
                           2: frozenset({"sent_consistency", "received_signatures"})}),
    SplitAttack("collusion-rewritten-transcript", "node 1 sends negated activations and records the honest ones; "
                "after the run node 2 records the honest activations too, under node 1's signatures: the two "
                "transcripts agree on an exchange that never happened", frozenset({2}), {2: frozenset({"replay"})},
                nodes={1: _impl("PhantomDigestNode", direction="activation", stash="{run}/colluders-stash.npz")},
                posthoc=_collude,
                must_pass={1: frozenset({"sent_consistency", "replay"}),
                           2: frozenset({"received_signatures", "received_tensors"})}),
    SplitAttack("interpolation", "node 1's checkpoints between its first and last are interpolated",
                frozenset({1}), {1: frozenset({"replay"})}, posthoc=_interpolate),
)}


@dataclass
class AttackOutcome:
    name: str
    detected: bool
    blamed_correctly: bool
    blamed: list[int]
    failed_checks: dict[int, list[str]]
    caught_by: str
    detail: str = ""
    segments_replayed: dict[int, str] = field(default_factory=dict)
    passed_checks: dict[int, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"detected": self.detected, "blamed_correctly": self.blamed_correctly, "blamed": self.blamed,
                "failed_checks": {str(k): v for k, v in self.failed_checks.items()}, "caught_by": self.caught_by,
                "segments_replayed": {str(k): v for k, v in self.segments_replayed.items()}, "detail": self.detail}

    def passed(self, rank: int) -> set[str]:
        return set(self.passed_checks.get(rank, []))


_NAMED = (re.compile(r"the sender is node (\d+)"), re.compile(r"node (\d+)'s key"),
          re.compile(r"node (\d+)'s plan signature"))


def named_node(message: str) -> int | None:
    """The node a run-stopping error blames."""
    for pattern in _NAMED:
        m = pattern.search(message)
        if m:
            return int(m.group(1))
    return None


def train_run(out: Path, keys: Path, *, args: list[str] | None = None,
              per_rank: dict[int, list[str]] | None = None) -> Any:
    from pol.split.launch import launch_local
    from pol.split.planning import SplitConfig

    argv = list(args or BASE_ARGS)
    stages = int(argv[argv.index("--stages") + 1])
    labels = argv[argv.index("--labels-at") + 1] if "--labels-at" in argv else "last"
    nodes = SplitConfig(stages=stages, labels_at=labels).num_nodes
    return launch_local([*argv, "--out", str(out), "--keys", str(keys), "--force"], nodes, per_rank_args=per_rank)


def run_attack(attack: SplitAttack, workdir: Path, keys: Path, *, honest_run: Path | None = None,
               verifier_seed: int | None = 0, segments: int | None = None) -> AttackOutcome:
    """Run (or write) the attack and judge it; ``honest_run`` feeds the after-the-fact ones."""
    from pol.keys import generate_keypair
    from verifier.split import SplitVerifyOptions, verify_pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    run = workdir / "run"
    per_rank = {r: ["--node-impl", impl, "--node-impl-kwargs",
                    json.dumps({k: v.replace("{run}", str(run)) if isinstance(v, str) else v for k, v in kw.items()})]
                for r, (impl, kw) in attack.nodes.items()}
    if attack.outsider_key is not None:
        outsider = workdir / "outsider"
        if not (outsider / "node.key").exists():
            generate_keypair(outsider / "node")
        per_rank.setdefault(attack.outsider_key, []).extend(["--key", str(outsider / "node.key")])
    if attack.posthoc is None or attack.nodes:
        result = train_run(run, keys, per_rank=per_rank)
        if attack.stops_run or not result.ok:
            first = result.first_failure
            message = first.error_line if first else ""
            named = named_node(message) if first else None
            return AttackOutcome(attack.name, first is not None,
                                 first is not None and named is not None and {named} == set(attack.blamed),
                                 [named] if named is not None else [], {}, "stopped at run time" if first else "",
                                 message)
    else:
        if honest_run is None:
            raise ValueError(f"{attack.name} rewrites an honest run: pass honest_run")
        run = honest_run
    if attack.posthoc is not None:
        run = attack.posthoc(run, workdir / "forged", keys)
    report = verify_pipeline(run, keys=keys, options=SplitVerifyOptions(seed=verifier_seed, segments=segments))
    failed = {int(r.info["rank"]): [c.name for c in r.failed] for r in report.nodes if r.failed}
    passed = {int(r.info["rank"]): sorted(c.name for c in r.checks if c.passed) for r in report.nodes}
    right_checks = all(attack.checks.get(r, frozenset()) <= set(failed.get(r, [])) for r in attack.blamed)
    right_passes = all(attack.must_pass[r] <= set(passed.get(r, [])) for r in attack.must_pass)
    caught_by = "; ".join(f"node {r}: {', '.join(names)}" for r, names in sorted(failed.items()))
    return AttackOutcome(attack.name, report.verdict == "rejected",
                         set(report.blamed) == set(attack.blamed) and right_checks and right_passes,
                         report.blamed, failed, caught_by,
                         segments_replayed={int(r.info["rank"]): f"{r.info.get('segments_replayed')}/"
                                            f"{r.info.get('segments_total')}" for r in report.nodes},
                         passed_checks=passed)
