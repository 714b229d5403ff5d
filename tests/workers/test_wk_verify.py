"""Third-party verification of the coordinator's log: an honest log verifies; every lie a
coordinator could tell (aggregation, framing, substitution, edits, truncation, key) is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from pol.hashing import weights_digest
from pol.keys import load_signing_key
from pol.workers.aggregate import aggregate
from pol.workers.log import LogWriter, read_log, submission_digest
from pol.workers.plan import FederatedPlan
from pol.workers.roundproof import decode_round_proof
from verifier.workers import WorkersVerifyOptions, verify_log

ALL = WorkersVerifyOptions(replays=100, seed=0)


def _failed(report) -> set[str]:
    return {c.name for c in report.checks if c.passed is False}


def rewrite(src: str, dst: Path, key_path: Path, edit: Callable[[list[dict], list[dict[int, bytes]]], None],
            *, rounds: int | None = None, plan_signature: bytes | None = None) -> Path:
    """Re-emit a log with edited records, re-signed and re-chained with ``key_path`` (a dishonest
    coordinator holds its own key); the final weights are recomputed from the edited records."""
    log = read_log(src)
    plan = FederatedPlan.from_bytes(log.plan_bytes)
    records = [json.loads(r.record_bytes) for r in log.rounds]
    subs = [dict(r.submissions) for r in log.rounds]
    edit(records, subs)
    weights = log.final_weights
    for rec in records:
        weights = rec.pop("_weights", weights)       # an edit may carry the aggregate it now claims
    writer = LogWriter(dst, plan, plan_signature or log.plan_signature, load_signing_key(key_path), overwrite=True)
    keep = len(records) if rounds is None else rounds
    for rec, sub in zip(records[:keep], subs[:keep]):
        writer.write_round({k: v for k, v in rec.items() if k not in ("format", "round", "prev")}, sub)
    if rounds is None:
        from safetensors.numpy import save

        writer.finish(weights_digest(weights), save(weights))
    else:
        writer.close()
    return dst


@pytest.fixture(scope="module")
def verified_log(attack_job) -> str:
    return attack_job["runs"][0]["out"]


def test_the_honest_coordinators_log_verifies(verified_log: str, wk_keys: Path) -> None:
    report = verify_log(verified_log, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert report.verdict == "verified", [c for c in report.checks if c.passed is not True]
    assert report.check("rejections").passed and "2 of 2" in report.check("rejections").figure
    assert report.info["detection_probability"] == 1.0


def test_without_a_key_it_is_only_self_asserted_and_another_key_is_refused(verified_log: str, wk_keys) -> None:
    assert verify_log(verified_log, options=ALL).verdict == "self-asserted"
    assert _failed(verify_log(verified_log, public_key=str(wk_keys / "other.pub"), options=ALL)) == {"signer"}


def test_a_coordinator_that_averaged_a_forged_update_fails_replay(attack_job, wk_keys) -> None:
    report = verify_log(attack_job["runs"][1]["out"], public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"replay"}
    assert "worker 3" in report.check("replay").detail


def test_wrong_aggregation_arithmetic_is_caught(verified_log: str, wk_keys, tmp_path: Path) -> None:
    def lie(records: list[dict], subs: list[dict]) -> None:
        bent = {k: v.copy() for k, v in read_log(verified_log).final_weights.items()}
        name = sorted(bent)[0]
        bent[name].view(np.uint32).flat[0] ^= 1          # one bit of the aggregate
        records[-1]["global_out"] = weights_digest(bent).hex()
        records[-1]["_weights"] = bent

    forged = rewrite(verified_log, tmp_path / "lie.h5", wk_keys / "coordinator.key", lie)
    report = verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"aggregation"}
    assert "bitwise" in report.check("aggregation").detail


def test_framing_an_honest_worker_is_caught_by_replaying_the_rejection(verified_log: str, wk_keys,
                                                                      tmp_path: Path) -> None:
    def frame(records: list[dict], subs: list[dict]) -> None:
        last = records[-1]
        entry = next(s for s in last["submissions"] if s["worker"] == 1)
        entry.update(status="rejected", check="replay", reason="(framed)", evidence={})
        start = read_log(verified_log)
        inputs = [(w, decode_round_proof(subs[-1][w]).tensors) for w in (2,)]
        prev = _global_before_last(start)
        result = aggregate("replay_verified", prev, inputs)
        last["aggregation"]["inputs"] = result.inputs
        last["global_out"] = weights_digest(result.weights).hex()
        last["excluded_after"] = sorted(set(last["excluded_after"]) | {1})
        last["_weights"] = result.weights

    forged = rewrite(verified_log, tmp_path / "framed.h5", wk_keys / "coordinator.key", frame)
    report = verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"rejections"}
    assert "replays exactly" in report.check("rejections").detail


def _global_before_last(log: Any) -> dict:
    from pol.tasks import seeded_weights

    weights = seeded_weights("digits-mlp", {}, 0)
    for rnd in log.rounds[:-1]:
        rec = json.loads(rnd.record_bytes)
        weights = aggregate("replay_verified", weights, [(w, decode_round_proof(rnd.submissions[w]).tensors)
                                                         for w in rec["aggregation"]["inputs"]]).weights
    return weights


def test_a_substituted_submission_is_caught(verified_log: str, wk_keys, tmp_path: Path) -> None:
    def swap(records: list[dict], subs: list[dict]) -> None:
        subs[0][3] = subs[0][4]                         # evidence of worker 3 replaced

    forged = rewrite(verified_log, tmp_path / "swap.h5", wk_keys / "coordinator.key", swap)
    report = verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"verdicts"}


def test_a_rejection_for_a_reason_the_gate_does_not_find_is_caught(verified_log: str, wk_keys, tmp_path) -> None:
    def mislabel(records: list[dict], subs: list[dict]) -> None:
        entry = next(s for s in records[0]["submissions"] if s["worker"] == 3)
        entry["check"] = "signature"

    forged = rewrite(verified_log, tmp_path / "mislabel.h5", wk_keys / "coordinator.key", mislabel)
    assert _failed(verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)) == {"verdicts"}


def test_an_edited_record_breaks_its_signature(verified_log: str, wk_keys, tmp_path: Path) -> None:
    dst = tmp_path / "edited.h5"
    shutil.copy(verified_log, dst)
    with h5py.File(dst, "r+") as f:
        raw = f["rounds/000001/record"][()].tobytes().replace(b'banned in round 0', b'banned in round 9', 1)
        del f["rounds/000001/record"]
        f["rounds/000001"].create_dataset("record", data=np.frombuffer(raw, np.uint8))
    report = verify_log(dst, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"chain", "final_signature"}


def test_a_truncated_log_does_not_verify(verified_log: str, wk_keys, tmp_path: Path) -> None:
    forged = rewrite(verified_log, tmp_path / "short.h5", wk_keys / "coordinator.key", lambda r, s: None, rounds=2)
    report = verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert "final_signature" in _failed(report)


def test_a_log_resigned_by_another_key_is_refused(verified_log: str, wk_keys, tmp_path: Path) -> None:
    forged = rewrite(verified_log, tmp_path / "other.h5", wk_keys / "other.key", lambda r, s: None)
    report = verify_log(forged, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert _failed(report) == {"chain", "final_signature"}


def test_the_record_names_each_submission_by_digest(verified_log: str) -> None:
    log = read_log(verified_log)
    rec = json.loads(log.rounds[0].record_bytes)
    named = {s["worker"]: s["digest"] for s in rec["submissions"] if "digest" in s}
    assert named == {w: submission_digest(raw) for w, raw in log.rounds[0].submissions.items()}


def test_reordered_signed_rounds_break_the_chain(verified_log: str, wk_keys, tmp_path: Path) -> None:
    """Each record keeps its valid signature; only the links show that two rounds were swapped."""
    dst = tmp_path / "reordered.h5"
    shutil.copy(verified_log, dst)
    with h5py.File(dst, "r+") as f:
        f.move("rounds/000001", "rounds/tmp")
        f.move("rounds/000002", "rounds/000001")
        f.move("rounds/tmp", "rounds/000002")
    report = verify_log(dst, public_key=str(wk_keys / "coordinator.pub"), options=ALL)
    assert "chain" in _failed(report) and "does not link" in report.check("chain").detail
    assert "signature does not verify" not in report.check("chain").detail
