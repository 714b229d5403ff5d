"""A corpus of malformed proof files: every one must give exit 2 and a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import zstandard
from cli_runner import error_document, run_pol

from pol.hashing import canonical_json


def _replace(f: h5py.File, path: str, data: np.ndarray) -> None:
    del f[path]
    f.create_dataset(path, data=data)


def _as_group(path: str) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        del f[path]
        f.create_group(path)
    return mutate


def _plan_edit(edit: Callable[[dict], object], encode: Callable[[dict], bytes] = canonical_json
               ) -> Callable[[h5py.File], None]:
    """Rewrite /plan with one edit (canonically encoded unless told otherwise)."""
    def mutate(f: h5py.File) -> None:
        plan = json.loads(f["plan"][()].tobytes())
        edit(plan)
        _replace(f, "plan", np.frombuffer(encode(plan), np.uint8))
    return mutate


MUTATIONS: dict[str, Callable[[h5py.File], None]] = {
    "no format marker": lambda f: f.attrs.__delitem__("format"),
    "future format version": lambda f: f.attrs.__setitem__("format_version", 99),
    "format version 1 (older digests)": lambda f: f.attrs.__setitem__("format_version", 1),
    "unknown codec": lambda f: f.attrs.__setitem__("codec", "lzma-magic"),
    "plan missing": lambda f: f.__delitem__("plan"),
    "plan not JSON": lambda f: _replace(f, "plan", np.frombuffer(b"{not json", np.uint8)),
    "plan wrong type": lambda f: _replace(f, "plan", np.arange(5, dtype=np.float64)),
    "plan fields missing": lambda f: _replace(f, "plan", np.frombuffer(b'{"version": 1, "seed": 0}', np.uint8)),
    "signer key short": lambda f: _replace(f, "signer_public_key", np.zeros(31, np.uint8)),
    "plan signature missing": lambda f: f.__delitem__("signatures/plan"),
    "chain digests wrong width": lambda f: _replace(f, "chain/digests", np.zeros((5, 31), np.uint8)),
    "chain lengths differ": lambda f: _replace(f, "chain/steps", np.zeros(3, np.int64)),
    "indices wrong batch": lambda f: _replace(f, "indices", np.zeros((40, 7), np.int64)),
    "indices float": lambda f: _replace(f, "indices", np.zeros((40, 32), np.float32)),
    "final head not hex": lambda f: f["final"].attrs.__setitem__("chain_head", "zz"),
    "checkpoint index not JSON": lambda f: _replace(f, "checkpoints/000002/index", np.frombuffer(b"[", np.uint8)),
    "checkpoint deltas corrupt": lambda f: _replace(f, "checkpoints/000002/deltas", np.frombuffer(b"\x28\xb5\x2f\xfd garbage", np.uint8)),
    "checkpoint plain missing": lambda f: f.__delitem__("checkpoints/000000/plain"),
    "unknown mode": lambda f: f.attrs.__setitem__("mode", "sparse"),
    "indices stored as a group": _as_group("indices"),
    "chain stored as a dataset": lambda f: _replace(f, "chain", np.zeros(3, np.uint8)),
    "chain steps 2-D": lambda f: _replace(f, "chain/steps", np.zeros((5, 1), np.int64)),
    "chain steps float": lambda f: _replace(f, "chain/steps", np.zeros(5, np.float64)),
    "checkpoints stored as a dataset": lambda f: _replace(f, "checkpoints", np.zeros(3, np.uint8)),
    "checkpoint stored as a dataset": lambda f: _replace(f, "checkpoints/000002", np.zeros(3, np.uint8)),
    "checkpoint named without padding": lambda f: f.create_group("checkpoints/1"),
    "stray entry in checkpoints": lambda f: f.create_group("checkpoints/notes"),
    "final stored as a dataset": lambda f: _replace(f, "final", np.zeros(3, np.uint8)),
    "plan not canonical": _plan_edit(lambda p: None, lambda p: json.dumps(p, sort_keys=True).encode()),
    "plan lr is NaN": _plan_edit(lambda p: p["lr_schedule"].__setitem__("lr", float("nan")),
                                 lambda p: json.dumps(p, sort_keys=True, separators=(",", ":")).encode()),
    "plan schedule lacks lr": _plan_edit(lambda p: p["lr_schedule"].pop("lr")),
    "plan schedule lr is a string": _plan_edit(lambda p: p["lr_schedule"].__setitem__("lr", "0.1")),
    "plan schedule unknown kind": _plan_edit(lambda p: p["lr_schedule"].__setitem__("kind", "warp")),
    "plan schedule not an object": _plan_edit(lambda p: p.__setitem__("lr_schedule", [0.1])),
    "plan schedule table too short": _plan_edit(lambda p: p.__setitem__("lr_schedule", {"kind": "table", "values": [0.1]})),
    "plan step milestones not integers": _plan_edit(
        lambda p: p.__setitem__("lr_schedule", {"kind": "step", "lr": 0.1, "milestones": ["x"], "gamma": 0.1})),
    "plan extra not an object": _plan_edit(lambda p: p.__setitem__("extra", [])),
    "plan model kwargs not an object": _plan_edit(lambda p: p["model"].__setitem__("kwargs", [1])),
    "plan model spec missing": _plan_edit(lambda p: p["model"].pop("spec")),
    "plan optimizer type missing": _plan_edit(lambda p: p["optimizer"].pop("type")),
    "plan optimizer hparams not an object": _plan_edit(lambda p: p["optimizer"].__setitem__("hparams", 3)),
    "plan optimizer not allow-listed": _plan_edit(lambda p: p["optimizer"].__setitem__("type", "LBFGS")),
    "plan data kwargs not an object": _plan_edit(lambda p: p["data"].__setitem__("kwargs", "x")),
    "plan num_samples is a bool": _plan_edit(lambda p: p["data"].__setitem__("num_samples", True)),
    "plan loss not a string": _plan_edit(lambda p: p.__setitem__("loss", 1)),
    "checkpoint index lies about sizes": lambda f: _replace(
        f, "checkpoints/000001/index", np.frombuffer(_zstd_edit(f["checkpoints/000001/index"][()], b'"shape": [64',
                                                                b'"shape": [6400000'), np.uint8)),
}


def _zstd_edit(blob: np.ndarray, old: bytes, new: bytes) -> bytes:
    """Re-compress a zstd-coded index with one edit (a well-formed stream that lies)."""
    text = zstandard.ZstdDecompressor().decompress(blob.tobytes())
    assert old in text
    return zstandard.ZstdCompressor().compress(text.replace(old, new))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_proof_exits_2_with_one_line(name: str, honest_proof: Path, keys: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pol.h5"
    shutil.copy(honest_proof, bad)
    with h5py.File(bad, "r+") as f:
        MUTATIONS[name](f)
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"], "--segments", "4", "--seed", "0", "--json"], capsys)
    assert code == 2, f"{name}: exit {code}\n{out[:500]}"
    assert error_document(out)["error"] in err and err.startswith("pol: error:") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err


SIGNED_BAD_PLANS: dict[str, Callable[[dict], object]] = {
    "optimizer hparam unknown to torch": lambda p: p["optimizer"]["hparams"].__setitem__("warp", 9),
    "optimizer hparam rejected by torch": lambda p: p["optimizer"]["hparams"].__setitem__("momentum", -1),
    "model kwargs rejected by the builder": lambda p: p["model"]["kwargs"].__setitem__("hidden", -1),
    "group hparam unknown to torch": lambda p: p["optimizer"]["groups"][0]["hparams"].__setitem__("warp", 1),
}


@pytest.mark.parametrize("name", sorted(SIGNED_BAD_PLANS))
def test_signed_plan_that_torch_refuses_exits_2(name: str, honest_proof: Path, keys: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A prover can sign any plan: values torch or the builder refuse are input errors, never internal ones."""
    from pol.assemble import assemble_proof, read_states, read_step_digests
    from pol.keys import load_signing_key
    from pol.plan import Plan
    from pol.proof_file import ProofReader

    with ProofReader(honest_proof) as r:
        plan = json.loads(r.plan_bytes)
        states, indices, steps = read_states(r), r.indices(), read_step_digests(r)
    SIGNED_BAD_PLANS[name](plan)
    bad = tmp_path / "signed-bad.pol.h5"
    assemble_proof(bad, Plan(**plan), states, indices, load_signing_key(keys["key"]), steps)  # unchecked: a forger's
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"], "--segments", "1", "--seed", "0"], capsys)
    assert code == 2, (name, code, err)
    assert err.startswith("pol: error:") and len(err.strip().splitlines()) == 1 and "internal error" not in err, err
