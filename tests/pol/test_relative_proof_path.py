"""A proof named by a path relative to the working directory is read (the sandboxed HDF5 reader runs
in another directory: it must get the absolute path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pol.proof_file import ProofReader


def test_relative_proof_path(tmp_path: Path, honest_proof: Path, monkeypatch: Any) -> None:
    shutil.copy(honest_proof, tmp_path / "run.pol.h5")
    monkeypatch.chdir(tmp_path)
    with ProofReader("run.pol.h5") as reader:
        assert reader.plan.num_steps == 40
