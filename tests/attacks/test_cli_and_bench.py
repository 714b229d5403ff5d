"""The attack CLI and the security benchmark, end to end on tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner


def test_cli_writes_and_judges_a_forgery(honest_raw_proof: Path, keys: dict, tmp_path: Path) -> None:
    from scripts.attacks.__main__ import main

    out = tmp_path / "forged.pol.h5"
    result = CliRunner().invoke(main, ["interpolation", "--victim", str(honest_raw_proof), "--key",
                                       str(keys["other_key"]), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert out.exists() and doc["verdict"] == "rejected" and "replay" in doc["failed_checks"]
    assert doc["caught_for_expected_reason"] is True


def test_cli_rejects_an_unknown_attack(tmp_path: Path) -> None:
    from scripts.attacks.__main__ import main

    result = CliRunner().invoke(main, ["no-such-attack", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "unknown attack" in result.output


def test_bench_document_shape(tmp_path: Path) -> None:
    from scripts.bench_security import render, run

    doc = run(1, 40, 10, ["interpolation", "fabricated-init"], tmp_path, verifier_seed=0)
    assert set(doc["attacks"]) == {"interpolation", "fabricated-init"}
    assert doc["attacks"]["fabricated-init"]["failing_checks"] == {"initialization": 1}
    assert doc["attacks"]["interpolation"]["detection_rate"] == 1.0
    assert doc["honest_false_rejection_rate"] == 0.0
    assert doc["verify_compute_fraction"] == 1.0  # 40-step run: all 4 segments replayed
    assert "fabricated-init" in render(doc)
