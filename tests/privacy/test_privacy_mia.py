"""The membership attacks are real: clearly above chance on an overfit model, at chance when the
"members" were never trained on, and at chance from commitments that hide the weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scripts.privacy import metrics, mia, runs
from scripts.privacy.data import digits_universe

CFG = runs.TrainConfig(members=64, nonmembers=64, epochs=100, every=20)


@pytest.fixture(scope="module")
def overfit() -> dict[str, Any]:
    """Four shadows and one target (the attacker's plain loop: same training as the Recorder's)."""
    scorer = mia.Scorer(CFG)
    stats = mia.ShadowStats.of(scorer, runs.train_shadows(CFG, 4, seed=1))
    cand, lab = runs.target_candidates(CFG, split_seed=5)
    target = runs.train_shadow(CFG, cand[lab == 1], seed=9)
    return {"scorer": scorer, "stats": stats, "cand": cand, "lab": lab, "target": target}


@pytest.mark.parametrize("attack", mia.TRAJECTORY_ATTACKS)
def test_attacks_beat_chance_on_an_overfit_model(overfit: dict[str, Any], attack: str) -> None:
    scores = mia.view_scores(overfit["scorer"], dict(enumerate(overfit["target"])), overfit["stats"], overfit["cand"])
    lab = overfit["lab"]
    assert metrics.roc_auc(scores[attack], lab) > 0.7
    assert metrics.crossfit_advantage(scores[attack], lab, metrics.folds_for(lab, 0)) > 0.2


@pytest.mark.parametrize("attack", mia.TRAJECTORY_ATTACKS)
def test_attacks_are_at_chance_when_the_members_were_never_trained_on(overfit: dict[str, Any], attack: str) -> None:
    never = np.setdiff1d(np.arange(len(digits_universe()[1])), overfit["cand"][overfit["lab"] == 1])
    pick = np.random.default_rng(0).choice(never, 512, replace=False)
    fake = np.array([1] * 256 + [0] * 256)          # "members" that the target never saw
    scores = mia.view_scores(overfit["scorer"], dict(enumerate(overfit["target"])), overfit["stats"], pick)
    assert abs(metrics.roc_auc(scores[attack], fake) - 0.5) < 0.07


def test_trajectory_attack_uses_the_checkpoints_it_is_given(overfit: dict[str, Any]) -> None:
    """With only checkpoint 0 (the seeded init, the same for members and non-members) in view,
    even the trajectory attack is at chance: its power comes from the trained checkpoints."""
    scores = mia.view_scores(overfit["scorer"], {0: overfit["target"][0]}, overfit["stats"], overfit["cand"])
    assert abs(metrics.roc_auc(scores["trajectory"], overfit["lab"]) - 0.5) < 0.1


def test_commitment_similarity_would_find_a_leaking_commitment(overfit: dict[str, Any]) -> None:
    """The (d) attack's mechanics: had one shadow's commitment equalled the target's (as a
    deterministic encoding of equal weights would), its members would rank first."""
    stats, cand = overfit["stats"], overfit["cand"]
    twin = stats.member[0, cand].astype(int)                 # shadow 0 trained exactly these
    same, other = b"\x5a" * 96, bytes(range(96))
    scores = mia.commitment_similarity_scores(same, [same] + [other] * (len(stats.member) - 1), stats, cand)
    assert metrics.roc_auc(scores, twin) > 0.9


def test_pedersen_commitments_of_equal_weights_share_no_more_bits_than_chance(overfit: dict[str, Any]) -> None:
    """Why the similarity attack finds nothing: fresh blindings make two commitments to the same
    weights as far apart as two random strings (a deterministic encoding would agree on every bit)."""
    from zk import Committer, Params

    committer = Committer(Params())
    a = np.unpackbits(np.frombuffer(mia.commit_weights(overfit["target"][-1], committer), dtype=np.uint8))
    b = np.unpackbits(np.frombuffer(mia.commit_weights(overfit["target"][-1], committer), dtype=np.uint8))
    assert len(a) == len(b) >= 768
    assert 0.4 < float(np.mean(a == b)) < 0.6          # 768 bits: 0.5 +- 0.018 (1 s.d.)
