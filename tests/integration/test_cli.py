"""The CLI as a user runs it: keygen -> train -> inspect -> verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_runner import run_json, run_pol


def test_train_then_verify_end_to_end(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, out, _ = run_pol(["keygen", "--out", tmp_path / "k" / "trainer"], capsys)
    assert code == 0 and len(out.strip()) == 40
    assert oct(os.stat(tmp_path / "k" / "trainer.key").st_mode & 0o777) == "0o600"
    proof = tmp_path / "run.pol.h5"
    code, doc = run_json(["train", "--task", "digits-cnn", "--out", proof, "--key", tmp_path / "k" / "trainer.key",
                          "--every", "10", "--steps", "30", "--seed", "3"], capsys)
    assert code == 0 and doc["steps"] == 30 and doc["checkpoints"] == 4
    code, info = run_json(["inspect", proof], capsys)
    assert code == 0 and info["finished"] and info["planned_steps"] == 30 and info["seed"] == 3
    code, rep = run_json(["verify", proof, "--key", tmp_path / "k" / "trainer.pub", "--segments", "3"], capsys)
    assert code == 0, rep
    assert rep["schema_version"] == 1 and rep["verdict"] == "verified"
    assert {c["name"] for c in rep["checks"]} >= {"signer", "plan_signature", "final_signature", "chain",
                                                  "plan_consistency", "data_commitment", "initialization", "replay"}
    assert rep["detection_probability"]["f=0.1"] == 1.0  # all 3 segments replayed


def test_verify_without_key_is_self_asserted(honest_proof: Path, capsys) -> None:  # noqa: ANN001
    code, rep = run_json(["verify", honest_proof, "--segments", "1", "--seed", "1"], capsys)
    assert code == 1 and rep["verdict"] == "self-asserted"
    assert rep["signer_trust"] == "self-asserted"


def test_verify_accepts_fingerprint(honest_proof: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    from pol.keys import fingerprint, load_verify_key

    fpr = fingerprint(load_verify_key(keys["pub"]))
    code, rep = run_json(["verify", honest_proof, "--key", fpr, "--segments", "1"], capsys)
    assert code == 0 and rep["verdict"] == "verified"
    code, rep = run_json(["verify", honest_proof, "--key", "0" * 40, "--segments", "1"], capsys)
    assert code == 1 and rep["verdict"] == "rejected"


def test_bad_key_file_exits_2(honest_proof: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.pub"
    bad.write_text("hello\n")
    code, out, err = run_pol(["verify", honest_proof, "--key", bad], capsys)
    assert code == 2 and "not a pol key file" in err


def test_help_is_fast_and_does_not_import_torch() -> None:
    code = "import sys; from pol.cli import cli; cli.main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("False")
    assert "verify" in out and "train" in out


def test_json_report_is_one_document_on_stdout(honest_proof: Path, keys: dict) -> None:
    res = subprocess.run([sys.executable, "-m", "pol", "verify", str(honest_proof), "--key", str(keys["pub"]),
                          "--segments", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "verified" and res.stderr == ""


def test_train_on_missing_cuda_exits_2(tmp_path: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the missing-CUDA error path does not apply")
    code, out, err = run_pol(["train", "--task", "digits-mlp", "--out", tmp_path / "x.pol.h5", "--key", keys["key"],
                              "--steps", "5", "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in err
