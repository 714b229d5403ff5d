"""Single-step checks (issue 15): the state after every step is committed, so a verifier replays one
step from the committed state before it and compares with the committed digest after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import failed_checks, run_json, run_pol

from pol.assemble import assemble_proof, read_states, read_step_digests
from pol.keys import load_signing_key
from pol.proof_file import ProofReader


def test_challenged_steps_are_answered_and_replayed_one_step_each(honest_proof: Path, keys: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    code, out, _ = run_pol(["challenge", honest_proof, "--out", ch, "--segments", "0", "--steps", "6",
                            "--top-updates", "0", "--seed", "3", "--json"], capsys)
    assert code == 0
    doc = json.loads(ch.read_text())
    assert len(doc["steps"]) == 6 and doc["segments"] == [3]  # the last segment is always replayed
    assert run_pol(["respond", honest_proof, "--challenge", ch, "--out", resp], capsys)[0] == 0
    code, report = run_json(["verify", honest_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch,
                             "--top-updates", "0"], capsys)
    assert code == 0, report
    assert report["steps_challenged"] == 6
    assert report["replayed_steps"] == 6 + 10  # one step per challenged step, plus the last segment (k = 10)


def test_confidence_chooses_the_number_of_steps(honest_proof: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from verifier.sampling import samples_for

    ch = tmp_path / "ch.json"
    assert run_pol(["challenge", honest_proof, "--out", ch, "--confidence", "0.9", "--forged-fraction", "0.2"],
                   capsys)[0] == 0
    assert len(json.loads(ch.read_text())["steps"]) == samples_for(40, 0.9, 0.2)


def _with_one_forged_step(honest_proof: Path, key: Path, out: Path, step: int) -> Path:
    """The trainer signs a proof whose segments all replay, but one committed per-step digest is false."""
    with ProofReader(honest_proof) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    steps = list(steps)
    steps[step] = bytes(32)
    assemble_proof(out, plan, states, indices, load_signing_key(key), steps)
    return out


def test_a_false_step_commitment_is_caught_by_replaying_its_segment(honest_proof: Path, keys: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    forged = _with_one_forged_step(honest_proof, keys["key"], tmp_path / "f.pol.h5", 15)
    code, doc = run_json(["verify", forged, "--key", keys["pub"], "--segments", "4", "--seed", "0"], capsys)
    assert code == 1 and "replay" in failed_checks(doc)
    replay = next(c for c in doc["checks"] if c["name"] == "replay")
    assert "step 14 does not reproduce" in replay["detail"]  # named: the step whose result is not the commitment


def test_a_false_step_commitment_is_caught_by_a_single_step_check(honest_proof: Path, keys: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from verifier.api import VerifyOptions, verify

    forged = _with_one_forged_step(honest_proof, keys["key"], tmp_path / "f.pol.h5", 15)
    report = verify(forged, public_key=str(keys["pub"]),
                    options=VerifyOptions(segments=0, top_updates=0, steps=40, seed=0))  # every step, one by one
    assert report.verdict == "rejected"
    assert "step 14" in report.check("replay").detail or "step 15" in report.check("replay").detail
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    run_pol(["challenge", forged, "--out", ch, "--segments", "0", "--steps", "40", "--top-updates", "0"], capsys)
    code, _, err = run_pol(["respond", forged, "--challenge", ch, "--out", resp], capsys)
    assert code == 2 and "cannot answer" in err  # the prover cannot produce a state matching the false commitment


def test_steps_need_per_step_digests(tmp_path: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from pol.runner import train_task

    proof = tmp_path / "nosteps.pol.h5"
    train_task(proof, keys["key"], task="digits-mlp", steps=20, every=10, step_digests=False)
    code, _, err = run_pol(["verify", proof, "--key", keys["pub"], "--steps", "3"], capsys)
    assert code == 2 and "per-step digests" in err
    code, doc = run_json(["verify", proof, "--key", keys["pub"]], capsys)
    assert code == 0 and doc["verdict"] == "verified"  # segments still verify without them
