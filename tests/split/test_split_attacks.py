"""Every attack of scripts/attacks_split, run with real node processes: rejected and blamed on
the right node by the right check (the benchmark reports the same rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.attacks_split import ATTACKS, run_attack

# What the run-stopping error must say (the check that stopped it).
STOP_REASON = {
    "key-not-in-plan": "is not among the trusted public keys",
    "replaced-mid-run": "signature does not verify under the sender's plan key",
    "tampered-in-transit": "digest differs from the digest its sender signed",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_rejected_and_blamed_on_the_right_node(name: str, tmp_path: Path, node_keys: Path,
                                                          mlp_run: Path) -> None:
    attack = ATTACKS[name]
    outcome = run_attack(attack, tmp_path, node_keys, honest_run=mlp_run)
    assert outcome.detected, outcome
    assert outcome.blamed_correctly, outcome
    assert set(outcome.blamed) == set(attack.blamed)
    if attack.stops_run:
        assert STOP_REASON[name] in outcome.detail
    else:
        for rank, checks in attack.checks.items():
            assert checks <= set(outcome.failed_checks[rank]), outcome
        honest = set(range(3)) - set(attack.blamed)
        assert not honest & set(outcome.failed_checks)    # no honest node fails any check
    for rank, checks in attack.must_pass.items():
        # collusion: the cross-check of the colluders' boundary passes (their signed statements
        # agree, which proves nothing); only replaying each of them on its own inputs exposes them
        assert checks <= outcome.passed(rank), outcome



def test_a_node_refuses_to_sign_a_plan_its_own_options_do_not_give(tmp_path: Path, node_keys: Path) -> None:
    """Node 1 was started with another seed: the plan node 0 proposes differs from the one node 1
    builds from its own options and the contributions, so node 1 refuses to sign and the run stops
    before step one (no proof of it is written)."""
    from scripts.attacks_split import train_run

    result = train_run(tmp_path / "run", node_keys, per_rank={1: ["--seed", "5"]})
    assert not result.ok
    assert "node 1 refuses to sign the plan node 0 proposed" in result.first_failure.error_line  # type: ignore[union-attr]
    assert not list((tmp_path / "run").glob("node*.pol.h5"))
