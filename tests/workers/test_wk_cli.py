"""``pol workers train|verify`` and ``pol verify LOG`` as a user runs them: exit codes 0/1/2,
one JSON document with --json, one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_runner import run_json, run_pol


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import json
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("wk_cli")
    out = subprocess.run([sys.executable, "-m", "pol", "workers", "train", "--workers", "2", "--malicious", "1",
                          "--attack", "model-replacement", "--rounds", "2", "--local-steps", "3", "--out",
                          str(d / "fed.h5"), "--keys", str(d / "keys"), "--json"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert out.returncode == 0, out.stderr
    return {"dir": d, "log": d / "fed.h5", "pub": d / "keys" / "coordinator.pub", "doc": json.loads(out.stdout)}


def test_train_reports_the_attacker_rejected_and_the_honest_worker_admitted(trained: dict) -> None:
    doc = trained["doc"]
    assert doc["schema_version"] == 1 and doc["verdict"] == "completed"
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["worker 1 (honest)"]["passed"] is True
    attacker = by_name["worker 2 (model-replacement)"]
    assert attacker["passed"] is False and "replay" in attacker["detail"]
    assert doc["verify_compute_fraction"] == 1.0 and 0.0 < doc["main_accuracy"] <= 1.0
    assert doc["attack_success"] is not None and doc["attack_success"] < 0.2   # no backdoor got in


def test_workers_verify_and_pol_verify_accept_the_log(trained: dict, capsys) -> None:
    code, doc = run_json(["workers", "verify", trained["log"], "--key", trained["pub"], "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified"
    assert {c["name"] for c in doc["checks"]} >= {"chain", "aggregation", "replay", "rejections", "verdicts"}
    code, doc = run_json(["verify", trained["log"], "--key", trained["pub"], "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified" and doc["kind"] == "pol-workers-log-v1"


def test_without_a_key_the_exit_code_is_1(trained: dict, capsys) -> None:
    code, doc = run_json(["workers", "verify", trained["log"]], capsys)
    assert code == 1 and doc["verdict"] == "self-asserted"


@pytest.mark.parametrize("args, message", [
    (["--malicious", "1"], "--malicious needs --attack"),
    (["--malicious", "1", "--attack", "no-such-attack"], "unknown worker behaviour"),
    (["--workers", "2", "--malicious", "3", "--attack", "sybil"], "--malicious <= --workers"),
])
def test_bad_train_arguments_exit_2_with_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code, out, err = run_pol(["workers", "train", "--out", tmp_path / "x.h5", "--keys", tmp_path / "k", *args],
                             capsys)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _log_like(path: Path, build) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "pol-workers-log-v1"
        build(f)
    return path


def _bytes(f, name: str, raw: bytes) -> None:
    f.create_dataset(name, data=np.frombuffer(raw, np.uint8))


@pytest.mark.parametrize("make, message", [
    (lambda p: (p.write_bytes(b"not an hdf5 file"), p)[1], "HDF5 file"),
    (lambda p: _log_like(p, lambda f: None), "malformed log"),
    (lambda p: _log_like(p, lambda f: (f.create_group("rounds"), _bytes(f, "plan", b"{"),
                                       _bytes(f, "plan_signature", b"x"))), "plan is not JSON"),
    (lambda p: _log_like(p, lambda f: (f.create_group("rounds"), f.create_group("plan"),
                                       _bytes(f, "plan_signature", b"x"))), "not a byte string"),
    (lambda p: _log_like(p, lambda f: (f.create_group("rounds/000003"),)), "numbered"),
])
def test_malformed_logs_exit_2_with_a_clear_reason(tmp_path: Path, capsys, make, message: str) -> None:
    path = make(tmp_path / "bad.h5")
    code, out, err = run_pol(["workers", "verify", path], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_log_with_a_malformed_round_record_exits_2(attack_job: dict, wk_keys: Path, tmp_path: Path,
                                                    capsys) -> None:
    import shutil

    dst = tmp_path / "bad-record.h5"
    shutil.copy(attack_job["runs"][0]["out"], dst)
    with h5py.File(dst, "r+") as f:
        del f["rounds/000000/record"]
        _bytes(f["rounds/000000"], "record", b"[1, 2]")
    code, _, err = run_pol(["workers", "verify", dst, "--key", wk_keys / "coordinator.pub"], capsys)
    assert code == 2 and "not a pol-workers-round-v1 record" in err
