"""Parallel replay in worker processes gives the same judgement as in-process replay."""

from __future__ import annotations

from pathlib import Path

from pol.assemble import assemble_proof, read_states, read_step_digests
from pol.keys import load_signing_key
from pol.proof_file import ProofReader
from verifier.api import VerifyOptions, verify


def test_two_workers_match_one(honest_proof: Path, keys: dict) -> None:
    one = verify(honest_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=4, seed=0, workers=1))
    two = verify(honest_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=4, seed=0, workers=2))
    assert one.verdict == two.verdict == "verified"
    assert one.info["replayed_segments"] == two.info["replayed_segments"]
    assert [f["distance"] for f in one.info["segment_figures"]] == [f["distance"] for f in two.info["segment_figures"]]


def test_workers_report_a_forged_segment(honest_proof: Path, keys: dict, tmp_path: Path) -> None:
    with ProofReader(honest_proof) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    states[3] = {k: (v * 1.001 if k.startswith("model/") and v.dtype.kind == "f" else v) for k, v in states[3].items()}
    forged = tmp_path / "forged.pol.h5"
    assemble_proof(forged, plan, states, indices, load_signing_key(keys["key"]), steps)
    report = verify(forged, public_key=str(keys["pub"]), options=VerifyOptions(segments=4, seed=0, workers=2))
    assert report.verdict == "rejected"
    assert "segment 2" in report.check("replay").detail and "segment 3" in report.check("replay").detail
