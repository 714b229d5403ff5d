"""scripts/bench_workers.py: the JSON document has the keys the issue names, and its
ground-truth accounting counts what it says."""

from __future__ import annotations

import json

import pytest

from scripts import bench_workers
from scripts.attacks_workers import ATTACKS


def test_runs_cover_every_aggregator_attack_and_f(tmp_path) -> None:
    runs = bench_workers.plan_runs(tmp_path, 8, [1, 2], 3, 2, 2)
    cells = {(r["aggregator"], r["attack"], r["f"]) for r in runs if r["attack"] and "sampled" not in r["label"]}
    assert cells == {(a, k, f) for a in bench_workers.AGGREGATORS for k in ATTACKS for f in (1, 2)}
    attacked = next(r for r in runs if r["attack"] == "sybil" and r["f"] == 2)
    assert attacked["spec"]["behaviours"] == {"7": "sybil", "8": "sybil"}


def test_accounting_counts_only_deviating_rounds_of_malicious_workers(monkeypatch) -> None:
    run = {"attack": "stale-update", "f": 1, "spec": {"out": "x"}}
    subs = [{"round": r, "worker": w, "status": s} for r, w, s in
            [(0, 1, "accepted"), (0, 2, "accepted"), (1, 1, "rejected"), (1, 2, "accepted"), (2, 2, "rejected"),
             (2, 1, "missing"), (3, 2, "excluded")]]
    summary = {"submissions": subs, "seconds": 1.0, "trained_worker_steps": 1, "replayed_worker_steps": 1}
    monkeypatch.setattr("pol.workers.log.read_log", lambda path: type("L", (), {"final_weights": _weights()})())
    out = bench_workers.evaluate(run, summary, workers=2)
    assert (out["malicious_submitted"], out["malicious_accepted"]) == (2, 1)   # worker 2, rounds 1 and 2
    assert (out["honest_submitted"], out["honest_rejected"]) == (2, 1)         # worker 1, rounds 0 and 1


def _weights() -> dict:
    from pol.tasks import seeded_weights

    return seeded_weights("digits-mlp", {}, 0)


@pytest.mark.slow
def test_the_document_has_the_keys_the_issue_names(capsys) -> None:
    bench_workers.main(["--json", "--workers", "2", "--rounds", "1", "--local-steps", "2", "--timing-pairs", "1"])
    doc = json.loads(capsys.readouterr().out)
    for agg in bench_workers.AGGREGATORS:
        for attack in ATTACKS:
            cell = doc["aggregators"][agg][f"{attack.replace('-', '_')}_f1"]
            assert set(cell) >= {"main_accuracy", "backdoor_accuracy", "malicious_accepted", "honest_rejected"}
    assert set(doc["replay_verified"]) >= {"malicious_accepted", "honest_rejected", "max_accuracy_drop"}
    assert doc["replay_verified"]["malicious_accepted"] == 0 and doc["replay_verified"]["honest_rejected"] == 0
    assert doc["verify_compute_fraction"] == 1.0 and doc["coordinator_overhead_vs_fedavg"] > 0
    assert 0 < doc["all_honest_accuracy"] <= 1
