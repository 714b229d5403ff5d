"""Every forgery in scripts.attacks is rejected at default settings, for the right reason.

The attacker's own key is the trusted key: its signatures are valid, so only checks on the
*training* (init, data, plan, replay, published weights) can reject these proofs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.attacks import ATTACKS


def forge(name: str, victim, attacker, tmp_path: Path, seed: int = 1):
    return ATTACKS[name](victim, tmp_path / f"{name}.pol.h5", attacker, seed)


def assert_caught(forgery, judge_forgery, exactly: set[str] | None = None) -> set[str]:
    verdict, failed, info = judge_forgery(forgery)
    assert verdict == "rejected", (forgery.attack, failed)
    assert forgery.expected_checks <= failed, (forgery.attack, failed)
    assert not failed & {"signer", "plan_signature", "final_signature", "chain"}, \
        f"{forgery.attack}: a well-formed forgery must not fail integrity checks: {failed}"
    if exactly is not None:
        assert failed == exactly, failed
    return failed


@pytest.mark.parametrize("name", ["interpolation", "interpolation-lr0"])
def test_interpolation_is_caught_by_replay(name, victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge(name, victim, attacker, tmp_path)
    from pol.proof_file import ProofReader

    with ProofReader(forgery.path) as r:
        lr = r.plan.lr_schedule["lr"]
        final = {k[6:]: v for k, v in r.checkpoint_state(r.num_checkpoints - 1).items() if k.startswith("model/")}
    assert (lr == 1e-8) == (name == "interpolation-lr0")
    assert all(np.array_equal(final[k], victim.weights[k]) for k in victim.weights)  # it claims the stolen W
    failed = assert_caught(forgery, judge_forgery)
    assert "initialization" not in failed and "data_commitment" not in failed


def test_blindfold_top_q_fools_a_top_q_verifier_but_not_random_replay(victim, attacker, judge_forgery,
                                                                      tmp_path) -> None:
    from pol.hashing import state_digest
    from pol.proof_file import ProofReader
    from verifier.replay import Replayer

    forgery = forge("blindfold-top-q", victim, attacker, tmp_path)
    assert forgery.info["genuine_are_largest_updates"], forgery.info
    with ProofReader(forgery.path) as r:  # a verifier replaying only the largest updates would accept
        data = __import__("pol").load_data("digits-mlp").train
        rep = Replayer(r.plan, data, "cpu", "digits-mlp")
        for j in forgery.info["genuine_segments"]:
            s0, s1 = int(r.checkpoint_steps[j]), int(r.checkpoint_steps[j + 1])
            out = rep.run(r.checkpoint_state(j), s0, r.indices(s0, s1))
            assert state_digest(out) == r.state_digests[j + 1]
    assert_caught(forgery, judge_forgery)


def test_adversarial_near_with_perturbed_data_committed(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("adversarial-near-perturbed", victim, attacker, tmp_path)
    failed = assert_caught(forgery, judge_forgery)
    assert {"data_commitment", "initialization", "replay"} <= failed


def test_adversarial_near_with_real_data_root(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("adversarial-near-real", victim, attacker, tmp_path)
    failed = assert_caught(forgery, judge_forgery)
    assert "data_commitment" not in failed and {"initialization", "replay"} <= failed


def test_adversarial_from_seeded_init_is_caught_by_replay_alone(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("adversarial-seeded-real", victim, attacker, tmp_path)
    failed = assert_caught(forgery, judge_forgery)
    assert "initialization" not in failed and "data_commitment" not in failed


@pytest.mark.parametrize("name", ["fabricated-init", "fabricated-init-fresh"])
def test_fabricated_init_is_caught_only_by_the_init_check(name, victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge(name, victim, attacker, tmp_path)
    init, ref = forgery.info["init"], forgery.info["reference_init"]
    assert any(not np.array_equal(init[k], ref[k]) for k in ref)
    for k in ref:  # statistically right: the per-layer spread of the seeded init (within sampling error:
        # a sample standard deviation over n values varies by about 1/sqrt(2n) of itself)
        slack = 0.15 + 4 / np.sqrt(2 * ref[k].size)
        assert abs(float(np.std(init[k])) - float(np.std(ref[k]))) <= slack * float(np.std(ref[k])) + 1e-6, k
        if name == "fabricated-init":  # the disguise uses exactly the seeded values, rearranged
            assert np.array_equal(np.sort(init[k].ravel()), np.sort(ref[k].ravel()))
    # Everything else (replay of every segment, data, plan) passes: only the seed recomputation catches it.
    assert_caught(forgery, judge_forgery, exactly={"initialization"})


def test_splice_keeping_the_second_runs_indices(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("splice", victim, attacker, tmp_path)
    failed = assert_caught(forgery, judge_forgery)
    assert "plan_consistency" in failed


def test_splice_reindexed_to_the_committed_order(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("splice-reindexed", victim, attacker, tmp_path)
    failed = assert_caught(forgery, judge_forgery)
    assert "plan_consistency" not in failed and "replay" in failed


@pytest.mark.parametrize("name,reason", [("data-substitution-real", "replay"),
                                         ("data-substitution-committed", "data_commitment"),
                                         ("data-substitution-one-label", "replay")])
def test_data_substitution(name, reason, victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge(name, victim, attacker, tmp_path)
    assert forgery.info["segments_touched"] >= 1
    failed = assert_caught(forgery, judge_forgery)
    assert reason in failed


def test_stale_proof_for_other_weights(victim, attacker, judge_forgery, tmp_path) -> None:
    from pol.hashing import weights_digest
    from scripts.bench_security import trusted
    from verifier.api import verify

    forgery = forge("stale-proof", victim, attacker, tmp_path)
    assert forgery.extra_files["weights"].exists()
    assert forgery.info["weights_digest"] != forgery.info["proof_final_digest"]
    # The proof on its own is genuine (the attacker's honest run A): only the weights pairing is false.
    assert verify(forgery.path, public_key=trusted(attacker.verify_key), seed=0).verdict == "verified"
    verdict, failed, _ = judge_forgery(forgery)
    assert verdict == "rejected" and failed == {"weights_match"}
    assert weights_digest(victim.weights).hex() == forgery.info["weights_digest"]


def test_single_jump_is_caught_when_its_segment_is_replayed(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("single-jump", victim, attacker, tmp_path)
    assert forgery.info["jump_is_largest_update"]
    assert_caught(forgery, judge_forgery, exactly={"replay"} | ({"progress"} & judge_forgery(forgery)[1]))


def test_tolerance_drift_is_caught_by_exact_replay(victim, attacker, judge_forgery, tmp_path) -> None:
    forgery = forge("tolerance-drift", victim, attacker, tmp_path)
    assert 0 < forgery.info["closer_to_W"] < 1  # it did steer toward W
    verdict, failed, info = judge_forgery(forgery)
    assert info["mode"] == "exact" and verdict == "rejected" and "replay" in failed


def test_every_registered_attack_has_a_test() -> None:
    tested = {"interpolation", "interpolation-lr0", "blindfold-top-q", "adversarial-near-perturbed",
              "adversarial-near-real", "adversarial-seeded-real", "fabricated-init", "fabricated-init-fresh",
              "splice", "splice-reindexed", "data-substitution-real", "data-substitution-committed",
              "data-substitution-one-label", "stale-proof", "single-jump", "tolerance-drift"}
    tested |= {"zero-compute", "zero-compute-torch-suffix", "zero-compute-cuda", "momentum-jump", "momentum-jump-cuda",
               "lr-masked-jump", "compact-final-jump", "missing-checkpoint", "ground-fiat-shamir",
               "victim-seed-continuation", "nan-final", "float16-final", "extra-tensor", "skip-batches"}  # test_adaptive
    assert set(ATTACKS) == tested
