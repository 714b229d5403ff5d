"""Files that ask for unbounded work, carry unread bytes, or name code: refused quickly (issue 13)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import run_pol

from pol.keys import load_signing_key
from pol.proof_file import ProofReader
from scripts.fuzz.proofs import resign


def _plan(proof: Path) -> dict:
    with ProofReader(proof) as r:
        return json.loads(r.plan_bytes)


def _forged(honest: Path, tmp_path: Path, keys: dict, edit=None, chain_steps=None) -> Path:  # noqa: ANN001
    """The honest run re-signed under the 'other' key (which the tests then trust), with an edited plan."""
    out = tmp_path / "forged.pol.h5"
    shutil.copy(honest, out)
    key = load_signing_key(keys["other_key"])
    plan = dict(_plan(honest), signer=bytes(key.verify_key).hex())
    if edit is not None:
        edit(plan)
    resign(out, plan, key, chain_steps)
    return out


def test_forged_control_passes_the_signature_checks(honest_proof: Path, tmp_path: Path, keys: dict,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The forging helper itself: under the trusted forger key, signatures and chain pass (so the
    refusals below happen behind them, where the expensive work is)."""
    forged = _forged(honest_proof, tmp_path, keys)
    code, out, _ = run_pol(["verify", forged, "--key", keys["other_pub"], "--segments", "1", "--seed", "0", "--json"],
                           capsys)
    checks = {c["name"]: c["passed"] for c in json.loads(out)["checks"]}
    assert code == 1 and checks["plan_signature"] and checks["final_signature"] and checks["chain"]


@pytest.mark.parametrize("command", ["challenge", "inspect", "verify"])
def test_chain_steps_far_beyond_the_recorded_steps_are_refused_at_once(honest_proof: Path, tmp_path: Path,
                                                                        keys: dict, command: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    n = len(_plan_chain(honest_proof))
    forged = _forged(honest_proof, tmp_path, keys, chain_steps=[0, 10**15] + list(range(20, 20 + 10 * (n - 2), 10)))
    args = {"challenge": ["challenge", forged, "--out", tmp_path / "c.json", "--seed", "0"],
            "inspect": ["inspect", forged, "--json"],
            "verify": ["verify", forged, "--key", keys["other_pub"], "--json"]}[command]
    started = time.monotonic()
    code, _, err = run_pol(args, capsys)
    assert code == 2 and "/chain/steps" in err, err
    assert time.monotonic() - started < 60  # informational bound: the old reader looped 10^15 times


def _plan_chain(proof: Path) -> list[int]:
    with h5py.File(proof, "r") as f:
        return [int(s) for s in f["chain/steps"][()]]


def _edited_copy(proof: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001
    out = tmp_path / "edited.pol.h5"
    shutil.copy(proof, out)
    with h5py.File(out, "r+") as f:
        edit(f)
    return out


def _append_byte(f: h5py.File) -> None:
    blob = f["checkpoints/000001/deltas"][()]
    del f["checkpoints/000001/deltas"]
    f["checkpoints/000001"].create_dataset("deltas", data=np.concatenate([blob, blob[-1:]]))


def _flatten_step(f: h5py.File) -> None:
    del f["checkpoints/000001/meta/step"]
    f["checkpoints/000001/meta"].create_dataset("step", data=np.array([[10]], np.int64))


@pytest.mark.parametrize("name, edit, match", [
    ("a full proof that calls itself compact", lambda f: f.attrs.__setitem__("mode", "compact"), "mode 'compact'"),
    ("bytes after a zstd frame", _append_byte, "followed by other bytes"),
])
def test_unread_or_mislabelled_bytes_are_refused(name: str, edit, match: str, honest_proof: Path,  # noqa: ANN001
                                                 tmp_path: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    bad = _edited_copy(honest_proof, tmp_path, edit)
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"], "--segments", "1", "--seed", "0", "--json"], capsys)
    assert code == 2 and match in err, (name, code, err)


def test_reserved_tensors_must_have_their_shape(honest_raw_proof: Path, tmp_path: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    bad = _edited_copy(honest_raw_proof, tmp_path, _flatten_step)
    code, _, err = run_pol(["verify", bad, "--key", keys["pub"], "--segments", "1", "--seed", "0", "--json"], capsys)
    assert code == 2 and "meta/step must be a 0-D int64" in err and "internal error" not in err, err


def test_tied_alias_metadata_must_name_what_the_file_holds(honest_proof: Path, tmp_path: Path, keys: dict,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.numpy import load_file, save_file

    weights = tmp_path / "w.safetensors"
    assert run_pol(["export", honest_proof, "--out", weights], capsys)[0] == 0
    tensors = load_file(str(weights))
    first = sorted(tensors)[0]
    for ties in ({"zz.unknown": first}, {first: first}, {"zz.alias": "zz.missing"}):
        save_file(tensors, str(weights), metadata={"pol.tied": json.dumps(ties)})
        code, _, err = run_pol(["verify", weights, "--proof", honest_proof, "--key", keys["pub"], "--segments", "1"],
                               capsys)
        assert code == 2 and "pol.tied" in err, (ties, err)


def test_challenge_units_outside_the_proof_are_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              compact_proof_small: Path) -> None:
    ch = tmp_path / "c.json"
    assert run_pol(["challenge", compact_proof_small, "--out", ch, "--seed", "0", "--segments", "1"], capsys)[0] == 0
    doc = json.loads(ch.read_text())
    for segments in ([10**30], [-1], [True], [99]):
        ch.write_text(json.dumps(dict(doc, segments=segments)))
        code, _, err = run_pol(["respond", compact_proof_small, "--challenge", ch, "--out", tmp_path / "r.h5"], capsys)
        assert code == 2 and "internal error" not in err and len(err.strip().splitlines()) == 1, (segments, err)


@pytest.fixture(scope="module")
def compact_proof_small(tmp_path_factory: pytest.TempPathFactory, keys: dict) -> Path:
    from helpers_train import train_recorded

    return train_recorded(tmp_path_factory.mktemp("compact") / "c.pol.h5", keys["key"], steps=12, every=2, anchor=3)


def test_nothing_a_proof_names_is_imported(honest_proof: Path, tmp_path: Path, keys: dict,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A signed proof naming importable code (model, data, loss): no command imports it."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_named_code.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\ndef build(**k): raise SystemExit(42)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def name_code(plan: dict) -> None:
        plan["model"]["spec"] = "evil_named_code:build"
        plan["data"]["spec"] = "evil_named_code:build"
        plan["step"]["loss"] = {"spec": "evil_named_code:build", "kwargs": {}}

    forged = _forged(honest_proof, tmp_path, keys, name_code)
    weights = tmp_path / "w.safetensors"
    shutil.copy(forged, tmp_path / "w-src.pol.h5")
    runs = [["verify", forged, "--key", keys["other_pub"]], ["inspect", forged], ["card", "--proof", forged],
            ["challenge", forged, "--out", tmp_path / "c.json"], ["export", forged, "--out", weights],
            ["ownership", "--weights", weights, "--claim", forged, "--key", keys["other_pub"]],
            ["respond", forged, "--non-interactive", "1"]]
    for args in runs:
        code, out, err = run_pol(args, capsys)
        assert code != 42 and "evil_named_code" not in sys.modules and not marker.exists(), (args, code, err)
    card = run_pol(["card", "--proof", forged], capsys)[1]
    assert "evil_named_code" not in card.split("verify:")[1] and "YOUR_MODULE:MODEL_BUILDER" in card
    from pol.replay import Replayer

    with ProofReader(forged) as r, pytest.raises(TypeError):  # no default model: its caller names the code
        Replayer(r.plan, None, "cpu")  # type: ignore[call-arg]
