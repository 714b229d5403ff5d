"""`pol verify` reports the checks of an optional /zk section, and fails when it is tampered."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
from cli_runner import failed_checks, run_json, run_pol


def test_verify_reports_zk_checks_and_catches_a_swapped_commitment(honest_proof: Path, keys: dict, tmp_path: Path,
                                                                   capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "zk.pol.h5"
    shutil.copy(honest_proof, proof)
    code, _, err = run_pol(["zk", "commit", proof, "--key", keys["key"], "--secrets-out", tmp_path / "s.h5"], capsys)
    assert code == 0, err
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--segments", "1", "--seed", "0"], capsys)
    assert code == 0, doc
    zk = [c for c in doc["checks"] if c["name"].startswith("zk.")]
    assert zk and all(c["passed"] for c in zk)

    with h5py.File(proof, "r+") as f:  # swap the commitments of checkpoints 0 and 1
        ds = f["zk/commitments"]
        arr = ds[()]
        arr[[0, 1]] = arr[[1, 0]]
        ds[...] = arr
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--segments", "1", "--seed", "0"], capsys)
    assert code == 1
    failed = failed_checks(doc)
    assert "zk.signature" in failed
    assert {c for c in failed if not c.startswith("zk.")} == set()  # the rest of the proof is intact
