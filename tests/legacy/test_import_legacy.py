"""``pol import-legacy``: reference-layout directories in, honest legacy proofs out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import pytest
import torch
from cli_runner import run_pol

sys.path.insert(0, str(Path(__file__).parent))
from legacy_layout import make_legacy_dir  # noqa: E402


def _import(capsys, src: Path, out: Path, *extra: str) -> tuple[int, dict | None, str]:
    code, stdout, err = run_pol(["import-legacy", src, "--out", out, "--model", "digits-mlp", "--data", "digits-mlp",
                                 "--json", *extra], capsys)
    return code, (json.loads(stdout) if stdout.strip() else None), err


def test_import_marks_the_proof_legacy_and_unsigned(legacy_dir: Path, tmp_path: Path, capsys) -> None:
    from pol.legacy import legacy_limitations
    from pol.proof_file import ProofReader

    out = tmp_path / "legacy.pol.h5"
    code, doc, err = _import(capsys, legacy_dir, out)
    assert code == 0, err
    assert doc["legacy_unsigned"] is True and doc["checkpoints"] == 4 and doc["steps"] == 30
    with h5py.File(out, "r") as f:  # the marks are in the plan the throwaway key signs, not unsigned attributes
        assert set(f.attrs) == {"format", "format_version", "mode", "codec"}
    with ProofReader(out) as r:
        assert r.legacy and r.plan.extra["legacy_unsigned"] is True
        assert r.plan.sampler.startswith("legacy") and r.plan.data["merkle_root"] == ""
        assert r.plan.data["legacy_hash_txt"] == (legacy_dir / "hash.txt").read_text()
        assert r.plan.lr_schedule == {"kind": "constant", "lr": 0.05}
        state = r.checkpoint_state(3)
        assert "optim/state/fc1.weight/momentum_buffer" in state and int(state["meta/step"]) == 30
        limits = legacy_limitations(r)
    assert any("NOT signed" in s for s in limits) and any("batch order is not committed" in s for s in limits)


def test_native_proof_has_no_legacy_limitations(honest_proof: Path) -> None:
    from pol.legacy import legacy_limitations
    from pol.proof_file import ProofReader

    with ProofReader(honest_proof) as r:
        assert legacy_limitations(r) == []


def test_imported_checkpoints_replay_but_the_proof_is_never_verified(legacy_dir: Path, tmp_path: Path, capsys) -> None:
    from verifier.api import verify

    out = tmp_path / "legacy.pol.h5"
    assert _import(capsys, legacy_dir, out)[0] == 0
    report = verify(out, model="digits-mlp", data="digits-mlp", segments=3, seed=0)
    assert report.info["mode"] == "tolerance"
    assert report.check("replay").passed is True, report.check("replay")
    assert report.verdict != "verified"


def test_scheduler_and_data_parallel_prefix(tmp_path: Path, capsys) -> None:
    from pol.proof_file import ProofReader
    from verifier.api import verify

    src = make_legacy_dir(tmp_path / "dp", steps=30, milestones=[15], data_parallel=True)
    out = tmp_path / "dp.pol.h5"
    code, doc, err = _import(capsys, src, out)
    assert code == 0, err
    with ProofReader(out) as r:
        assert r.plan.lr_schedule == {"kind": "step", "lr": 0.05, "milestones": [15], "gamma": 0.1}
        assert "model/fc1.weight" in r.checkpoint_state(0)
    report = verify(out, model="digits-mlp", data="digits-mlp", segments=3, seed=0)
    assert report.check("replay").passed is True, report.check("replay")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Evil.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(legacy_dir: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    torch.save({"net": {}, "optimizer": _Evil()}, legacy_dir / "model_step_10")
    out = tmp_path / "evil.pol.h5"
    code, doc, err = _import(capsys, legacy_dir, out)
    assert code == 2 and doc is not None and doc["verdict"] == "error"
    assert "refused" in err and "Traceback" not in err
    assert not marker.exists(), "the pickle's payload ran"
    assert not out.exists(), "no proof may be written from a refused directory"


@pytest.mark.parametrize("breakage", ["no_indices", "gap", "pickled_indices", "not_a_dir"])
def test_malformed_directories_exit_2(breakage: str, legacy_dir: Path, tmp_path: Path, capsys) -> None:
    import numpy as np

    src = legacy_dir
    if breakage == "no_indices":
        (legacy_dir / "indices.npy").unlink()
    elif breakage == "gap":
        (legacy_dir / "model_step_20").unlink()
    elif breakage == "pickled_indices":
        np.save(legacy_dir / "indices.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        src = legacy_dir / "hash.txt"
    code, doc, err = _import(capsys, src, tmp_path / "bad.pol.h5")
    assert code == 2 and doc is not None and doc["verdict"] == "error", err
    assert "Traceback" not in err and (err.startswith("pol: error:") or "Error: Invalid value" in err), err


def test_verify_cli_reports_legacy_limitations_and_exits_1(legacy_dir: Path, tmp_path: Path, capsys) -> None:
    import json as _json

    from pol.cli import main

    out = tmp_path / "legacy.pol.h5"
    assert _import(capsys, legacy_dir, out)[0] == 0
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(out), "--model", "digits-mlp", "--data", "digits-mlp", "--segments", "3", "--json"])
    doc = _json.loads(capsys.readouterr().out)
    assert exc.value.code == 1
    assert doc["verdict"] == "legacy-replay-consistent" and doc["mode"] == "tolerance"
    by_name = {c["name"]: c for c in doc["checks"]}
    for name in ("signer", "plan_signature", "final_signature", "data_commitment", "initialization"):
        assert by_name[name]["passed"] is None and by_name[name]["figure"] == "not applicable (legacy)"
    assert by_name["replay"]["passed"] is True and by_name["chain"]["passed"] is True
    text = " ".join(doc["legacy_limitations"])
    assert "NOT signed" in text and "batch order is not committed" in text and "no plan was committed" in text
