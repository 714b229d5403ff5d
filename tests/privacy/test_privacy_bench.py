"""scripts/bench_privacy.py: the document's keys, intervals around every figure, goal verdicts."""

from __future__ import annotations

import json

import pytest

from scripts.bench_privacy import collect, judge, table
from scripts.privacy import runs
from scripts.privacy.experiments import LeakageSettings, MembershipSettings
from scripts.privacy.views import ACCESS_LEVELS


def test_goal_verdicts_follow_the_interval() -> None:
    assert judge(0.0, [-0.02, 0.005])["status"] == "met"
    assert judge(0.05, [0.02, 0.08])["status"] == "missed"
    assert judge(0.0, [-0.03, 0.03])["status"] == "undecided"
    assert judge(0.02, [-0.01, 0.05])["status"] == "undecided"     # a point above the goal is not a miss


@pytest.fixture(scope="module")
def tiny() -> dict:
    mia = MembershipSettings(train=runs.TrainConfig(members=64, nonmembers=64, epochs=10, every=5), targets=2,
                             shadows=2, n_boot=30, segment_sweep=(1,))
    leak = LeakageSettings(seeds=2, epochs=1, noise_ratios=(1.0,), n_boot=30)
    return json.loads(json.dumps(collect(mia, leak, quick=True)))   # what --json prints is plain JSON


def test_every_access_level_has_advantage_auc_and_interval(tiny: dict) -> None:
    for access in ACCESS_LEVELS:
        m = tiny["mia"][access]
        for figure in ("advantage", "auc"):
            lo, hi = m["ci95"][figure]
            assert lo <= m[figure] <= hi
        assert m["trials"] == 2 and m["samples"] == 2 * 128
        for attack in m["attacks"].values():
            assert attack["auc"]["bootstrap_resamples"] == 30 and len(attack["auc"]["per_trial"]) == 2
    cc = tiny["mia"]["compact_challenged"]
    assert cc["verified"] == "2/2" and cc["views_match_full_proof"] is True
    assert 0 < cc["disclosed_member_fraction"]["mean"] <= 1
    assert set(cc["segment_sweep"]) == {"1"}
    assert cc["segment_sweep"]["1"]["detection_probability"]["f=0.5"] < cc["detection_probability"]["f=0.5"]
    acc = tiny["mia"]["target_accuracy"]
    assert 0 <= acc["nonmembers"]["range"][0] <= acc["nonmembers"]["mean"] <= acc["members"]["mean"] <= 1


def test_split_keys_and_protection_rows(tiny: dict) -> None:
    split = tiny["split"]
    for s in ("plain", "u_shaped"):
        for a in ("norm", "cosine"):
            lo, hi = split["label_leakage_ci95"][s][a]
            assert lo <= split["label_leakage_auc"][s][a] <= hi
    kinds = {(r["split"], r["protection"]) for r in split["protection"]}
    assert kinds == {(s, k) for s in ("plain", "u_shaped") for k in ("none", "iso", "max_norm")}
    assert {g["status"] for g in tiny["goals"].values()} <= {"met", "missed", "undecided"}
    assert "compact_challenged" in table(tiny)
