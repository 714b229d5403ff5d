"""The forgeries seen one step at a time (scripts/attacks/steps.py) and the single-step flow benchmark
(scripts/bench_steps.py), on tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pol.proof_file import ProofReader


@pytest.mark.parametrize("name", ["tolerance-drift", "data-substitution-one-label", "single-jump", "spread-thin",
                                  "single-forged-step"])
def test_derived_forged_steps_are_the_steps_the_verifier_rejects(victim, attacker, tmp_path: Path, name: str) -> None:
    """The per-generator derivation equals judging every step with the verifier's own single-step judge."""
    from scripts.attacks import ATTACKS
    from scripts.attacks.common import holdings
    from scripts.attacks.steps import derived_forged_steps, scan_forged_steps

    with holdings() as held:
        forgery = ATTACKS[name](victim, tmp_path / "f.pol.h5", attacker, 3)
    with ProofReader(forgery.path) as reader:
        derived = derived_forged_steps(forgery, reader)
    scanned = scan_forged_steps(forgery.path, held)
    assert derived == scanned
    assert 0 < len(scanned) < 40  # thin: some steps forged, not all (so the comparison can tell)


def test_a_forger_answers_only_where_it_holds_the_committed_state(victim, attacker, tmp_path: Path) -> None:
    from scripts.attacks import ATTACKS
    from scripts.attacks.common import holdings
    from scripts.attacks.steps import forger_answer

    with holdings() as interpolating:
        forgery = ATTACKS["interpolation"](victim, tmp_path / "i.pol.h5", attacker, 3)
    with holdings() as substituting:
        substituted = ATTACKS["data-substitution-real"](victim, tmp_path / "d.pol.h5", attacker, 3)
    with ProofReader(forgery.path) as reader:
        answer = forger_answer(interpolating, reader, [5, 10, 15])
        assert answer.missing == [5, 15] and set(answer.states) == {10}  # 10: a checkpoint it wrote
        assert set(forger_answer(interpolating, reader, [5, 15], fill=True).states) == {5, 15}  # sent anyway
    with ProofReader(substituted.path) as reader:  # it trained every step, on its own labels: it can answer all
        answer = forger_answer(substituting, reader, [3, 17, 38])
        assert answer.missing == [] and answer.steps_replayed > 0


def test_step_flow_catches_forged_steps_and_accepts_honest_runs(tmp_path: Path) -> None:
    """The benchmark's interactive round on a 40-step run, with a budget that challenges every step: the
    honest runs verify (their prover regenerates every state), a dense forgery cannot answer, and a single
    forged step in the middle of a segment is rejected by the verifier's replay, as its claim says."""
    from scripts.bench_steps import render, run
    from verifier.sampling import samples_for

    doc = run(1, 40, 10, ["interpolation", "single-forged-step"], tmp_path, runs=1, confidence=0.999,
              forged_fraction=0.025, top_updates=(0,), verifier_seed=0, scan=False)
    setting = doc["settings"]["top-updates=0"]
    honest, dense, single = (setting["honest"], setting["attacks"]["interpolation"],
                             setting["attacks"]["single-forged-step"])
    assert samples_for(40, 0.999, 0.025) == 40  # every step challenged: detection is certain
    assert honest["false_rejections"] == 0 and honest["verdicts"] == {"verified": 1}
    assert honest["steps_challenged"] == 40 and honest["claimed_at_F"] >= 0.999
    assert honest["verifier_steps"] == 40 + 10  # one step each, plus the last segment
    assert honest["prover_steps"] > 0  # the honest prover regenerated the challenged states
    assert doc["forged_steps"]["interpolation"]["forged_step_fraction"] == 1.0
    assert dense["no_answer_rate"] == 1.0  # it holds no state behind its fabricated per-step digests
    assert dense["caught_no_answer"] == 1.0 and dense["caught_answering"] == 1.0
    assert doc["forged_steps"]["single-forged-step"]["forged_step_fraction"] == 0.025
    assert single["no_answer_rate"] == 0.0  # it holds every committed state, the lie included
    assert single["claimed_at_f"] == 1.0 and single["caught_answering"] == 1.0
    assert single["failing_checks"] == {"replay": 1} and single["caught_no_answer_95"][0] > 0.2
    assert "single-forged-step" in render(doc)


def test_nudged_steps_forge_what_they_name(victim, attacker, tmp_path: Path) -> None:
    """spread-thin forges 10% of the steps; spread-thin-segments one step in 10% of the segments;
    single-forged-step one step strictly inside a segment (no checkpoint on either side)."""
    from scripts.attacks import ATTACKS

    spread = ATTACKS["spread-thin"](victim, tmp_path / "s.pol.h5", attacker, 3)
    per_segment = ATTACKS["spread-thin-segments"](victim, tmp_path / "g.pol.h5", attacker, 3)
    single = ATTACKS["single-forged-step"](victim, tmp_path / "m.pol.h5", attacker, 3)
    with ProofReader(single.path) as reader:
        plan, at = reader.plan, {int(s) for s in reader.checkpoint_steps}
    assert len(spread.info["forged_steps"]) == 4 and spread.info["forged_step_fraction"] == 0.1  # 40 steps
    assert len(per_segment.info["forged_steps"]) == len(per_segment.info["forged_segments"]) == 1  # 4 segments
    (t,) = single.info["forged_steps"]
    assert t not in at and t + 1 not in at and single.info["forged_segments"] == [(plan.num_checkpoints - 1) // 2]
