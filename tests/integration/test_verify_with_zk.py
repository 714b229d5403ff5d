"""`pol verify` and the optional /zk section: bound results are checks, unbound ones only information."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from cli_runner import failed_checks, run_json, run_pol
from helpers_train import train_recorded

VERIFY = ["--segments", "1", "--seed", "0"]


def test_verify_reports_zk_checks_and_catches_a_swapped_commitment(honest_proof: Path, keys: dict, tmp_path: Path,
                                                                   capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "zk.pol.h5"
    shutil.copy(honest_proof, proof)
    code, _, err = run_pol(["zk", "commit", proof, "--key", keys["key"], "--secrets-out", tmp_path / "s.h5"], capsys)
    assert code == 0, err
    code, doc = run_json(["verify", proof, "--key", keys["pub"], *VERIFY], capsys)
    assert code == 0, doc
    zk = {c["name"]: c["passed"] for c in doc["checks"] if c["name"].startswith("zk.")}
    assert zk.get("zk.binding") is True and all(zk.values())
    assert "zk.chain" not in zk  # pol verify's own chain check covers it

    with h5py.File(proof, "r+") as f:  # swap the commitments of checkpoints 0 and 1
        ds = f["zk/commitments"]
        arr = ds[()]
        arr[[0, 1]] = arr[[1, 0]]
        ds[...] = arr
    code, doc = run_json(["verify", proof, "--key", keys["pub"], *VERIFY], capsys)
    assert code == 1
    failed = failed_checks(doc)
    assert "zk.signature" in failed
    assert {c for c in failed if not c.startswith("zk.")} == set()  # the rest of the proof is intact


class _UnstoredReader:
    """A reader that claims checkpoints the compact proof does not store, with made-up weights."""

    def __init__(self, real: Any, claimed: list[int]) -> None:
        self._real, self.stored_checkpoints = real, claimed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def checkpoint_state(self, i: int) -> dict[str, np.ndarray]:
        template = self._real.checkpoint_state(self._real.stored_checkpoints[0])
        rng = np.random.default_rng(i)
        return {k: rng.normal(0, 0.1, np.shape(v)).astype(np.float32) for k, v in template.items()
                if k.startswith("model/")}


def test_unbound_section_is_information_not_passed_checks(tmp_path: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    from pol.keys import load_signing_key
    from pol.proof_file import ProofReader
    from zk import Params
    from zk.link import build_section, write_section

    proof = train_recorded(tmp_path / "compact.pol.h5", keys["key"], steps=40, every=5, anchor=4)
    with ProofReader(proof) as r:
        unstored = [i for i in range(r.num_checkpoints) if i not in r.stored_checkpoints][:2]
        section, _ = build_section(_UnstoredReader(r, unstored), load_signing_key(keys["key"]),
                                   params=Params(chunk_size=256))
    write_section(proof, section)
    code, doc = run_json(["verify", proof, "--key", keys["pub"], *VERIFY], capsys)
    assert code == 0 and doc["verdict"] == "verified", doc
    assert not [c for c in doc["checks"] if c["name"].startswith("zk.")]  # no zk result counts as a check
    assert doc["zk"]["bound"] is False and doc["zk"]["verdict"] == "unbound"
    (binding,) = [c for c in doc["zk"]["checks"] if c["name"] == "zk.binding"]
    assert binding["passed"] is None and "unbound" in binding["detail"]
    code, zk_doc = run_json(["zk", "verify", proof, "--key", keys["pub"]], capsys)
    assert code == 1 and zk_doc["verdict"] == "unbound"
