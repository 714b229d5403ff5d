#!/usr/bin/env python
"""Benchmark node certification: fraud-proof referee cost, quorum throughput, attacks, Byzantine verifiers.

    python scripts/bench_certify.py --json            # digits-cnn, 100 steps, k = 10
    python scripts/bench_certify.py --json --quick    # digits-mlp, 40 steps, k = 10 (~2 minutes on 2 cores)

One JSON document on stdout with ``--json`` (a table otherwise); progress on stderr. Figures:

* ``bisection_referee_ratio``: the referee's compute for a fraud proof (hash the carried state,
  replay its one step, hash the result) over a verifier replaying the whole disputed segment
  (k = 10 steps with a digest after each, from the stored checkpoint), in process CPU time (one
  torch thread; less sensitive to other load than wall clock, which is reported too), measured in
  interleaved pairs in this process, median of the pairs; goal <= 0.25. Data loading and model building,
  which both sides pay once per process, are excluded (``referee_end_to_end_s`` includes them).
* ``bisection``: rounds of the interactive dispute (proof without per-step digests) and where it
  landed.
* ``votes_per_second``: votes tallied per second by ``verifier.quorum`` (read from files, parsed,
  signature checked, counted; no evidence to re-check), 100 verifiers voting;
  ``evidence_recheck``: re-checking one piece of step evidence (regenerate its start state from
  the checkpoint before it, then one step), after a warm-up.
* ``attacks.<name>.rejected``: every attack of tests/certify, run once here (the honest verifiers
  replay every segment, so that no attack passes by a lucky draw).
* ``byzantine_verifiers_changed_outcome``: over honest and forged subjects and every Byzantine
  behaviour of ``scripts/byzantine_voter.py``, how often f = 1 liar changed the quorum's
  decision (must be 0).
* ``certify_cost_ratio``: on the built-in 3-stage split pipeline (digits-mlp; ``--quick``: 40
  steps, else 3 epochs = 168 steps; k = 10), trained for real as 3 node processes with
  ``--attest --commit``: per node, (its attestation exchange before step one + committing its final
  weights + its share of the quorum tally, ``pol split certify``'s per-node tally of 4 votes) / its
  training time (the training loop of the node process, recording included); the worst node.
  Attestation and commitment are fixed costs per run: the ratio falls as the run grows
  (``pipeline.per_node`` gives every part). ``certify_cost_ratio_with_voting`` adds the four
  verifiers' voting (each replays its own sample of every node) per node; informational, since
  that is verification, whose cost ``scripts/bench_split.py`` reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scripts._bench_common import bench_parser, emit, format_table, goal, load_now, machine_info, timed  # noqa: E402
from scripts._bench_common import log as _log  # noqa: E402


def log(msg: str) -> None:
    _log("bench_certify", msg)


def make_keys(d: Path) -> dict[str, Path]:
    from pol.keys import generate_keypair

    out: dict[str, Path] = {}
    for name in ("trainer", "attacker", "v1", "v2", "v3", "v4"):
        out[name], out[name + ".pub"] = generate_keypair(d / name)
    return out


def referee_ratio(forged: Path, info: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Interleaved pairs: (referee compute for the fraud proof) / (verifier replaying the segment)."""
    from pol.hashing import state_digest
    from pol.proof_file import ProofReader
    from pol.replay import replay_digests
    from scripts._bench_common import interleaved_order
    from verifier.dispute import dispute_segment
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    with ProofReader(forged) as reader:
        units = ExactUnitReplayer(reader)
        outcome = dispute_segment(units, info["forged_segment"], proof_subject(reader).digest)
        fp = outcome.fraud_proof
        assert fp is not None and fp.steps == 1
        a, b = units.segment_steps(info["forged_segment"])
        start = {k: v.copy() for k, v in reader.checkpoint_state(info["forged_segment"]).items()}
        seg_idx, step_idx = reader.indices(a, b), reader.indices(fp.start_step, fp.stop_step)

        def segment() -> None:
            state_digest(start)                                   # the verifier checks its start state too
            replay_digests(units.replayer, start, a, seg_idx)

        def referee() -> None:
            state_digest(fp.state)
            replay_digests(units.replayer, fp.state, fp.start_step, step_idx)

        segment(), referee()                                      # warm-up (allocations, first kernels)
        cpu: dict[str, list[float]] = {"segment": [], "referee": []}
        wall: dict[str, list[float]] = {"segment": [], "referee": []}
        for label in interleaved_order(["segment", "referee"], rounds):
            c0, w0 = time.process_time(), time.perf_counter()
            (segment if label == "segment" else referee)()
            cpu[label].append(time.process_time() - c0)
            wall[label].append(time.perf_counter() - w0)
    ratios = [r / s for r, s in zip(cpu["referee"], cpu["segment"])]
    return {"ratio": statistics.median(ratios), "segment_steps": b - a, "referee_steps": fp.steps,
            "segment_replay_cpu_s": statistics.median(cpu["segment"]), "referee_cpu_s": statistics.median(cpu["referee"]),
            "wall_clock_ratio": statistics.median(r / s for r, s in zip(wall["referee"], wall["segment"])),
            "pairs": rounds, "cpu_ratios": [round(r, 4) for r in ratios], "fraud_proof": fp}


def bench_bisection(nostep_forged: Path, info: dict[str, Any], attacker_key: Path) -> dict[str, Any]:
    from pol.keys import load_signing_key
    from pol.proof_file import ProofReader
    from scripts.attacks.one_step import ForgerOracle
    from verifier.dispute import LocalProver, dispute_segment
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    with ProofReader(nostep_forged) as reader:
        units = ExactUnitReplayer(reader)
        subject = proof_subject(reader).digest
        prover = LocalProver(ForgerOracle(reader, units.replayer, info), load_signing_key(attacker_key), subject)
        outcome = dispute_segment(units, info["forged_segment"], subject, prover)
    fp = outcome.fraud_proof
    assert fp is not None
    return {"rounds": outcome.rounds, **{k: v for k, v in outcome.summary().items() if k in ("max_rounds", "steps")},
            "forged_step": info["forged_step"], "located_steps": [fp.start_step, fp.stop_step],
            "located_the_forged_step": fp.start_step == info["forged_step"], "claims_in_fraud_proof": len(fp.claims),
            "verifier_seconds": round(outcome.seconds, 3)}


def cast_votes(proof: Path, trusted_pub: Path, keys: list[Path], out: Path) -> list[Any]:
    from pol.keys import load_signing_key
    from verifier.api import verify
    from verifier.vote import cast_vote

    out.mkdir(parents=True, exist_ok=True)
    # every segment replayed: the attack table must not depend on a lucky draw (the quorum's
    # detection probability for sampled votes is stated by the quorum itself; tests/certify)
    return [cast_vote(proof, verify(proof, public_key=str(trusted_pub), progress_check=False, segments=1 << 20),
                      load_signing_key(k), out / f"v{i + 1}.json") for i, k in enumerate(keys)]


def decide(proof: Path, votes: list[Any], trusted: list[bytes], f: int = 1) -> Any:
    from pol.proof_file import ProofReader
    from verifier.evidence import ProofRechecker
    from verifier.quorum import tally
    from verifier.subject import proof_subject

    with ProofReader(proof) as r:
        subject = proof_subject(r)
    rechecker = ProofRechecker(proof)
    try:
        return tally(subject, votes, trusted, f, rechecker)
    finally:
        rechecker.close()


def votes_per_second(d: Path, template: Any, n: int = 100, repeats: int = 3) -> dict[str, Any]:
    from nacl.signing import SigningKey

    from verifier.quorum import load_votes, tally
    from verifier.vote import sign_vote, write_vote

    keys = [SigningKey.generate() for _ in range(n)]
    folder = d / "many-votes"
    folder.mkdir()
    t_sign = time.perf_counter()
    for i, k in enumerate(keys):
        write_vote(sign_vote(dataclasses.replace(template, verifier=bytes(k.verify_key)), k), folder / f"v{i:04d}.json")
    sign_s = time.perf_counter() - t_sign
    trusted = [bytes(k.verify_key) for k in keys]
    f = (n - 1) // 3
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        votes, bad = load_votes(folder)
        result = tally(template.subject, votes, trusted, f)
        rates.append(n / (time.perf_counter() - t0))
        assert result.decision == "accepted" and not bad
    return {"votes_per_second": round(statistics.median(rates), 1), "verifiers": n, "f": f,
            "sign_and_write_per_second": round(n / sign_s, 1)}


def attestation_attacks() -> tuple[dict[str, dict[str, Any]], float]:
    from nacl.signing import SigningKey

    from certify.attestation import (
        NodeAttestationVerifier,
        NodeClaims,
        NodeNotAttested,
        NodePolicy,
        attest_node,
        expected_measurement,
        launch_node_enclave,
        node_image,
    )
    from tee_sim import CollateralStore, NonceRegistry, SimulatedPlatform, SimulatedVendor, issue_collateral

    stages = [{"index": i, "module": {"spec": "digits-mlp", "kwargs": {"cut": i}}} for i in range(3)]
    plan = hashlib.sha256(b"bench plan").digest()
    vendor = SimulatedVendor.generate()
    platform = SimulatedPlatform.create(vendor)
    store = CollateralStore(None, root_public_key=vendor.public_key)
    store.offer(issue_collateral(vendor, platforms=[platform]))
    image = node_image()
    checker = NodeAttestationVerifier(root_public_key=vendor.public_key, collateral=store, nonces=NonceRegistry(),
                                      policy=NodePolicy(expected={r: expected_measurement([s], image=image)
                                                                  for r, s in enumerate(stages)}))
    enclaves = [launch_node_enclave(platform, [s], image=image) for s in stages]
    claims = [NodeClaims(r, (r,), bytes(SigningKey.generate().verify_key), plan) for r in range(3)]

    def honest() -> dict[int, Any]:
        out = {}
        for r in range(3):
            nonce = checker.issue_nonce()
            out[r] = (attest_node(enclaves[r], claims[r], nonce), claims[r], nonce)
        return out

    t0 = time.perf_counter()
    first = honest()
    checker.admit(first)
    per_node = (time.perf_counter() - t0) / 3

    def attempt(change: dict[int, Any]) -> dict[str, Any]:
        try:
            checker.admit({**honest(), **change})
        except NodeNotAttested as exc:
            return {"rejected": True, "reason": "; ".join(f"node {r}: {','.join(v)}" for r, v in exc.failures.items())}
        return {"rejected": False, "reason": ""}

    def lie(rank: int, enclave: Any, quoted: NodeClaims, nonce: bytes | None = None) -> dict[int, Any]:
        nonce = checker.issue_nonce() if nonce is None else nonce
        return {rank: (attest_node(enclave, quoted, nonce), claims[rank], nonce)}

    debug = launch_node_enclave(platform, [stages[1]], image=image, debug=True)
    wrong = launch_node_enclave(platform, [stages[0]], image=image)
    impostor = dataclasses.replace(claims[1], node_public_key=bytes(SigningKey.generate().verify_key))
    other_plan = dataclasses.replace(claims[1], plan_digest=hashlib.sha256(b"other").digest())
    return {
        "debug_enclave": attempt(lie(1, debug, claims[1])),
        "wrong_measurement": attempt(lie(2, wrong, claims[2])),
        "stale_nonce_replayed_quote": attempt({0: first[0]}),
        "quote_binds_another_key": attempt(lie(1, enclaves[1], impostor)),
        "quote_for_another_plan": attempt(lie(1, enclaves[1], other_plan)),
    }, per_node


def commitment_attacks(proof: Path) -> tuple[dict[str, dict[str, Any]], float]:
    from certify.commitment import binding_of_proof, commit_final_weights, final_model_tensors, verify_final_weights
    from pol.proof_file import ProofReader
    from zk import ProofRejected

    with ProofReader(proof) as r:
        binding, weights = binding_of_proof(r), final_model_tensors(r)
        earlier = {k: v for k, v in r.checkpoint_state(r.num_checkpoints - 2).items() if k in weights}
    t0 = time.perf_counter()
    fwc, _ = commit_final_weights(weights, binding)
    verify_final_weights(weights, fwc, binding)
    seconds = time.perf_counter() - t0
    other, _ = commit_final_weights(earlier, binding)

    def attempt(fn: Any) -> dict[str, Any]:
        try:
            fn()
        except ProofRejected as exc:
            return {"rejected": True, "reason": str(exc)[:120]}
        return {"rejected": False, "reason": ""}

    moved = dataclasses.replace(binding, chain_head=bytes(32))
    return {
        "commitment_not_to_the_final_weights": attempt(lambda: verify_final_weights(weights, other, binding)),
        "commitment_moved_to_another_chain": attempt(
            lambda: verify_final_weights(weights, dataclasses.replace(fwc, binding=moved), moved)),
    }, seconds


def fraud_proof_attacks(honest: Path, trusted_pub: Path, fp: Any, forged: Path, forged_pub: Path,
                        d: Path) -> dict[str, dict[str, Any]]:
    from pol.proof_file import ProofReader
    from verifier.fraud_proof import COMMITTED, FraudProof, referee, write_fraud_proof
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    def judged(candidate: FraudProof, proof: Path, pub: Path, name: str) -> dict[str, Any]:
        path = d / f"{name}.h5"
        write_fraud_proof(path, candidate)
        result = referee(path, proof, str(pub))
        failed = [c.name for c in result.checks if not c.passed]
        return {"rejected": result.verdict != "proven", "reason": ",".join(failed)}

    with ProofReader(honest) as r:
        t = 15
        state = ExactUnitReplayer(r).state_after(t)[0]
        per_step = r.step_state_digests
        framed = FraudProof(proof_subject(r).digest, t, t + 1, COMMITTED, COMMITTED, per_step[t], per_step[t + 1],
                            bytes(32), state)
    return {
        "fraud_proof_framing_an_honest_step": judged(framed, honest, trusted_pub, "framed"),
        "fraud_proof_naming_a_wrong_digest": judged(dataclasses.replace(framed, end_digest=bytes(32)), honest,
                                                    trusted_pub, "wrong"),
        "fraud_proof_against_another_proof": judged(fp, honest, trusted_pub, "other"),
    }


def pipeline_certify_cost(d: Path, quick: bool) -> dict[str, Any]:
    """certify_cost_ratio on a real 3-node pipeline run with --attest --commit (see the docstring)."""
    from pol.cli import main as pol_main
    from pol.keys import generate_keypair, load_signing_key
    from pol.split.launch import launch_local, raise_for_failure
    from verifier.quorum import load_votes, tally

    from certify.node_votes import NodeRechecker, cast_node_votes, for_node, node_subject
    from certify.pipeline_certificate import build_body, certificate_digest

    steps = 40 if quick else 168
    tee, run, keys = d / "tee", d / "pipeline", d / "pipeline-keys"
    try:
        pol_main(["tee", "init", "--state", str(tee)])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    for r in range(3):
        generate_keypair(keys / f"node{r}")
    log(f"3-stage pipeline, digits-mlp, {steps} steps, --attest --commit (3 node processes)")
    result = launch_local(["--task", "digits-mlp", "--stages", "3", "--steps", str(steps), "--every", "10",
                           "--out", str(run), "--keys", str(keys), "--attest", str(tee), "--commit"], 3)
    raise_for_failure(result)
    nodes = sorted(result.results, key=lambda r: r["rank"])
    log("four verifiers vote on every node (in this process, one after the other)")
    vkeys = []
    for i in range(4):
        generate_keypair(d / f"pv{i}")
        vkeys.append(load_signing_key(d / f"pv{i}.key"))
    vote_s = []
    for i, key in enumerate(vkeys):
        seconds, _ = timed(cast_node_votes, run, key, d / "pipeline-votes", seed=100 + i)
        vote_s.append(seconds)
    digest = certificate_digest(build_body(run))
    votes, bad = load_votes(d / "pipeline-votes")
    trusted = [bytes(k.verify_key) for k in vkeys]
    tally_s, decisions = [], []
    for r in range(3):
        rechecker = NodeRechecker(run, r)
        seconds, res = timed(tally, node_subject(digest, r), for_node(votes, digest, r), trusted, 1, rechecker, bad)
        rechecker.close()
        tally_s.append(seconds)
        decisions.append(res.decision)
    per_node = []
    for r, node in enumerate(nodes):
        overhead = node["attest_seconds"] + node["commit_seconds"] + tally_s[r]
        voting = sum(vote_s) / 3
        per_node.append({"rank": r, "train_s": node["seconds"], "attest_s": node["attest_seconds"],
                         "commit_s": node["commit_seconds"], "tally_s": round(tally_s[r], 4),
                         "ratio": round(overhead / node["seconds"], 4),
                         "ratio_with_voting": round((overhead + voting) / node["seconds"], 4)})
    return {"task": "digits-mlp", "stages": 3, "steps": steps, "every": 10, "decisions": decisions,
            "per_node": per_node, "voting_s_per_verifier": [round(v, 3) for v in vote_s],
            "certify_cost_ratio": max(n["ratio"] for n in per_node),
            "certify_cost_ratio_with_voting": max(n["ratio_with_voting"] for n in per_node)}


def main() -> int:
    args = bench_parser(__doc__, "digits-mlp, 40 steps (~2 minutes on 2 cores)").parse_args()
    import torch

    torch.set_num_threads(1)
    from pol.keys import load_signing_key
    from pol.runner import train_task
    from scripts.attacks import load_victim
    from scripts.attacks.one_step import forge
    from scripts.byzantine_voter import LIES, lying_vote
    from verifier.quorum import tally
    from verifier.vote import sign_vote

    task, steps = ("digits-mlp", 40) if args.quick else ("digits-cnn", 100)
    doc: dict[str, Any] = {"quick": args.quick, "task": task, "steps": steps, "every": 10,
                           "machine": machine_info()}
    with __import__("tempfile").TemporaryDirectory(prefix="bench-certify-") as tmp:
        d = Path(tmp)
        keys = make_keys(d)
        log(f"training {task} for {steps} steps (k = 10), and a one-step forgery of it")
        train_s, _ = timed(train_task, d / "honest.pol.h5", keys["trainer"], task=task, steps=steps, every=10, seed=0,
                           codec="raw")
        honest = d / "honest.pol.h5"
        forgery = forge(load_victim(honest), d / "forged.pol.h5", keys["attacker"], seed=1)
        forged = forgery.path
        train_task(d / "nostep.pol.h5", keys["trainer"], task=task, steps=steps, every=10, seed=0, codec="raw",
                   step_digests=False)
        nostep = forge(load_victim(d / "nostep.pol.h5"), d / "nostep-forged.pol.h5", keys["attacker"], seed=2,
                       step=forgery.info["forged_step"] - 2)

        log("referee vs whole-segment replay (interleaved pairs)")
        rr = referee_ratio(forged, forgery.info, rounds=15 if args.quick else 9)
        fp = rr.pop("fraud_proof")
        doc["bisection_referee_ratio"] = round(rr["ratio"], 4)
        doc["referee"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rr.items() if k != "ratio"}
        from verifier.fraud_proof import referee, write_fraud_proof

        write_fraud_proof(d / "fraud.h5", fp)
        t_ref, result = timed(referee, d / "fraud.h5", forged, str(keys["attacker.pub"]))
        assert result.verdict == "proven"
        doc["referee"].update({"referee_end_to_end_s": round(t_ref, 3), "fraud_proof_bytes": (d / "fraud.h5").stat().st_size,
                               "proof_bytes": forged.stat().st_size})
        log("bisection without per-step digests")
        doc["bisection"] = bench_bisection(nostep.path, nostep.info, keys["attacker"])

        log("honest verifiers vote (3 real verifications per subject)")
        trusted = [bytes(load_signing_key(keys[f"v{i}"]).verify_key) for i in range(1, 5)]
        honest_votes = cast_votes(honest, keys["trainer.pub"], [keys["v1"], keys["v2"], keys["v3"]], d / "hv")
        forged_votes = cast_votes(forged, keys["attacker.pub"], [keys["v1"], keys["v2"], keys["v3"]], d / "fv")
        base = {"honest": decide(honest, honest_votes, trusted).decision,
                "forged": decide(forged, forged_votes, trusted).decision}
        doc["quorum_without_byzantine"] = base
        doc["honest_votes_on_the_forgery"] = [sv.vote.verdict for sv in forged_votes]
        changed, scenarios, attacks = 0, [], {}
        liar_key = load_signing_key(keys["v4"])
        for name, proof, votes in (("honest", honest, honest_votes), ("forged", forged, forged_votes)):
            for lie in LIES:
                result = decide(proof, [*votes, lying_vote(proof, liar_key, lie)], trusted)
                changed += result.decision != base[name]
                scenarios.append({"subject": name, "lie": lie, "decision": result.decision})
                if (name == "honest") == lie.startswith("reject") or (name == "forged" and lie == "accept"):
                    attacks[f"byzantine_{lie.replace('-', '_')}_on_{name}_proof"] = {
                        "rejected": result.decision == base[name],
                        "reason": "; ".join(i.reason for i in result.ignored) or
                                  ("rejection without evidence counted neither way" if lie == "reject-no-evidence"
                                   else "checked evidence overrides the acceptance")}
        doc["byzantine_verifiers_changed_outcome"] = changed
        doc["byzantine_scenarios"] = scenarios
        attacks["forged_step_quorum"] = {"rejected": base["forged"] == "rejected",
                                         "reason": "checked evidence: step does not reproduce"}
        subject = honest_votes[0].vote.subject
        v = honest_votes[0]
        tampered = dataclasses.replace(v, vote=dataclasses.replace(v.vote, segments_uniform=1), source="tampered")
        k5 = load_signing_key(keys["attacker"])
        unknown = sign_vote(dataclasses.replace(v.vote, verifier=bytes(k5.verify_key)), k5)
        for name, extra in (("forged_vote", tampered), ("unknown_verifier_vote", unknown),
                            ("duplicated_vote", dataclasses.replace(v, source="copy")),
                            ("foreign_vote", dataclasses.replace(forged_votes[1], source="foreign"))):
            result = tally(subject, [v, extra], trusted, 1)
            attacks[name] = {"rejected": len(result.accepting) == 1 and len(result.ignored) == 1,
                             "reason": result.ignored[0].reason if result.ignored else ""}
        flip = lying_vote(honest, load_signing_key(keys["v1"]), "reject-no-evidence")
        result = tally(subject, [*honest_votes, flip], trusted, 1)
        attacks["equivocating_verifier"] = {"rejected": len(result.accepting) == 2,
                                            "reason": result.ignored[0].reason if result.ignored else ""}
        attacks.update(fraud_proof_attacks(honest, keys["trainer.pub"], fp, forged, keys["attacker.pub"], d))
        tee, attest_per_node = attestation_attacks()
        attacks.update(tee)
        zk_attacks, commit_s = commitment_attacks(honest)
        attacks.update(zk_attacks)
        doc["attacks"] = attacks

        log("vote throughput")
        doc.update(votes_per_second(d, honest_votes[0].vote))
        from verifier.evidence import ProofRechecker

        rechecker = ProofRechecker(forged)
        # an honest verifier that drew no forged segment votes "verified" and carries no evidence
        evidence = next(e for sv in forged_votes for e in sv.vote.evidence if e.kind == "replay")
        rechecker.recheck(evidence)  # warm-up: data, model
        before = rechecker.replayed_steps
        seconds, finding = timed(rechecker.recheck, evidence)
        doc["evidence_recheck"] = {"seconds": round(seconds, 4), "evidence": evidence.describe(),
                                   "confirmed": finding.confirmed, "replayed_steps": rechecker.replayed_steps - before}
        rechecker.close()
        pipeline = pipeline_certify_cost(d, args.quick)
        doc["certify_cost_ratio"] = pipeline.pop("certify_cost_ratio")
        doc["certify_cost_ratio_with_voting"] = pipeline.pop("certify_cost_ratio_with_voting")
        doc["pipeline"] = pipeline
        doc["certify_cost_parts"] = {
            "informational": True,
            "attestation_per_node_s": round(attest_per_node, 4),
            "final_weights_commit_and_check_s": round(commit_s, 4),
            "quorum_tally_s": round(4 / doc["votes_per_second"], 4),
            "single_process_training_s": round(train_s, 3),
            "note": "the single-process run of the same task, for scale; not a node's training time",
        }
        doc["goals"] = {"bisection_referee_ratio": {"limit": 0.25, "status": goal(doc["bisection_referee_ratio"], 0.25)},
                        "certify_cost_ratio": {"limit": 0.10, "status": goal(doc["certify_cost_ratio"], 0.10)},
                        "byzantine_verifiers_changed_outcome": {"limit": 0,
                                                                "status": goal(changed, 0)}}
        doc["all_attacks_rejected"] = all(a["rejected"] for a in attacks.values())
        doc["load_average_at_end"] = load_now()
        shutil.rmtree(d, ignore_errors=True)
    rows = [["bisection_referee_ratio", doc["bisection_referee_ratio"], doc["goals"]["bisection_referee_ratio"]["status"]],
            ["bisection rounds (no per-step digests)", doc["bisection"]["rounds"], f"max {doc['bisection']['max_rounds']}"],
            ["votes_per_second", doc["votes_per_second"], ""],
            ["byzantine_verifiers_changed_outcome", changed, doc["goals"]["byzantine_verifiers_changed_outcome"]["status"]],
            ["attacks rejected", f"{sum(a['rejected'] for a in attacks.values())}/{len(attacks)}", ""],
            ["certify_cost_ratio (worst node)", doc["certify_cost_ratio"], doc["goals"]["certify_cost_ratio"]["status"]],
            ["certify_cost_ratio_with_voting", doc["certify_cost_ratio_with_voting"], "informational"]]
    emit(doc, as_json=args.json, table=format_table(rows, ["figure", "value", "goal"]))
    return 0 if doc["all_attacks_rejected"] and changed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
