"""Edited proofs must be rejected (exit 1) with the failing check named; unreadable ones exit 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import error_document, failed_checks, run_json, run_pol

from pol.assemble import assemble_proof, read_states, read_step_digests
from pol.hashing import canonical_json
from pol.keys import load_signing_key
from pol.proof_file import ProofReader


def verify_json(proof: Path, pub: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    return run_json(["verify", proof, "--key", pub, "--segments", "4", "--seed", "0", *extra], capsys)


def test_honest_proof_verifies_bitwise(honest_raw_proof: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = verify_json(honest_raw_proof, keys["pub"], capsys)
    assert code == 0, doc
    assert doc["verdict"] == "verified" and doc["mode"] == "exact"
    assert all(c["passed"] is True for c in doc["checks"])


def test_one_value_changed_in_middle_checkpoint(proof_copy: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(proof_copy, "r+") as f:
        ds = f["checkpoints/000002/model/fc1.weight"]
        w = ds[()]
        w[0, 0] += 1e-3
        ds[...] = w
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert "checkpoints" in failed_checks(doc)


def test_two_checkpoints_swapped(proof_copy: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(proof_copy, "r+") as f:
        f.move("checkpoints/000002", "checkpoints/tmp")
        f.move("checkpoints/000003", "checkpoints/000002")
        f.move("checkpoints/tmp", "checkpoints/000003")
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert {"checkpoints", "plan_consistency"} <= failed_checks(doc)


def test_last_checkpoint_removed(proof_copy: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(proof_copy, "r+") as f:
        last = len(f["chain/digests"]) - 1
        del f[f"checkpoints/{last:06d}"]
        for name in ("digests", "state_digests", "steps"):
            f["chain"][name].resize(last, axis=0)
        f["steps/state_digests"].resize(int(f["chain/steps"][-1]) + 1, axis=0)  # a careful tamperer
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert failed_checks(doc) == {"chain"}  # the signed chain head is gone; nothing else is judged
    assert {c["name"] for c in doc["checks"] if c["figure"] == "not run"} >= {"checkpoints", "replay"}


def test_indices_of_one_step_changed(proof_copy: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(proof_copy, "r+") as f:
        ind = f["indices"][()]
        row = set(ind[12].tolist())
        ind[12, 0] = next(i for i in range(1500) if i not in row)
        f["indices"][...] = ind
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert failed_checks(doc) == {"chain"} and doc["stopped_early"] is True


def test_learning_rate_in_plan_changed(proof_copy: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(proof_copy, "r+") as f:
        plan = json.loads(f["plan"][()].tobytes())
        plan["lr_schedule"]["lr"] = plan["lr_schedule"]["lr"] * 2
        del f["plan"]
        f.create_dataset("plan", data=np.frombuffer(canonical_json(plan), np.uint8))  # readable, but not the signed plan
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert "plan_signature" in failed_checks(doc)


def _reassemble(src: Path, dst: Path, key_path: Path, edit=None) -> Path:
    with ProofReader(src) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    key = load_signing_key(key_path)
    if edit is not None:
        states = edit(states)
    assemble_proof(dst, dataclasses.replace(plan, signer=bytes(key.verify_key).hex()), states, indices, key, steps,
                   codec="raw")
    return dst


def test_proof_resigned_with_another_key(honest_raw_proof: Path, tmp_path: Path, keys: dict,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    forged = _reassemble(honest_raw_proof, tmp_path / "resigned.pol.h5", keys["other_key"])
    code, doc = verify_json(forged, keys["pub"], capsys)
    assert code == 1
    assert failed_checks(doc) == {"signer"} and doc["stopped_early"] is True
    # Under its own (thief's) key the signatures hold, but the trajectory is bound to the key that planned
    # it: the run seed changes with the signer, so the initial weights and the batch order are not the thief's.
    code, doc = verify_json(forged, keys["other_pub"], capsys)
    assert code == 1
    assert {"initialization", "plan_consistency"} <= failed_checks(doc)


def test_one_label_of_the_data_set_changed(honest_raw_proof: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = verify_json(honest_raw_proof, keys["pub"], capsys, "--data", "tamper_data:digits_one_label_changed")
    assert code == 1
    assert "data_commitment" in failed_checks(doc)


def _average_middle(states: list[dict]) -> list[dict]:
    i = 2
    out = [dict(s) for s in states]
    for k in out[i]:
        if k.startswith("model/") and out[i][k].dtype.kind == "f":
            out[i][k] = ((states[i - 1][k] + states[i + 1][k]) / 2).astype(out[i][k].dtype)
    return out


def test_checkpoint_replaced_by_average_of_neighbours(proof_copy: Path, keys: dict,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with ProofReader(proof_copy) as r:
        a, b = r.checkpoint_state(1), r.checkpoint_state(3)
    with h5py.File(proof_copy, "r+") as f:
        for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            f[f"checkpoints/000002/model/{name}"][...] = (a[f"model/{name}"] + b[f"model/{name}"]) / 2
    code, doc = verify_json(proof_copy, keys["pub"], capsys)
    assert code == 1
    assert "checkpoints" in failed_checks(doc)


def test_averaged_checkpoint_resigned_by_the_trainer_fails_replay(honest_raw_proof: Path, tmp_path: Path, keys: dict,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    forged = _reassemble(honest_raw_proof, tmp_path / "avg.pol.h5", keys["key"], _average_middle)
    code, doc = verify_json(forged, keys["pub"], capsys)
    assert code == 1
    assert failed_checks(doc) == {"replay"}


def test_truncated_file_exits_2(honest_proof: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict) -> None:
    data = honest_proof.read_bytes()
    bad = tmp_path / "truncated.pol.h5"
    bad.write_bytes(data[: len(data) // 2])
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"]], capsys)
    assert code == 2
    assert err.startswith("pol: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_non_hdf5_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: dict) -> None:
    bad = tmp_path / "notes.pol.h5"
    bad.write_text("this is not a proof\n")
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"], "--json"], capsys)
    assert code == 2 and error_document(out)["exit_code"] == 2
    assert "not a readable HDF5 file" in err
