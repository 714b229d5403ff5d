"""Shared fixtures: one key pair and small honest proofs per test session (per xdist worker)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from helpers_train import train_recorded  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pol.keys import generate_keypair

    d = tmp_path_factory.mktemp("keys")
    sk, pk = generate_keypair(d / "trainer")
    sk2, pk2 = generate_keypair(d / "other")
    return {"key": sk, "pub": pk, "other_key": sk2, "other_pub": pk2}


@pytest.fixture(scope="session")
def honest_proof(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    return train_recorded(tmp_path_factory.mktemp("honest") / "run.pol.h5", keys["key"], steps=40, every=10)


@pytest.fixture(scope="session")
def honest_raw_proof(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    return train_recorded(tmp_path_factory.mktemp("honest_raw") / "run.pol.h5", keys["key"], steps=40, every=10,
                          codec="raw")


@pytest.fixture()
def proof_copy(tmp_path: Path, honest_raw_proof: Path) -> Path:
    """A writable copy of the raw-codec honest proof (for tamper tests)."""
    dst = tmp_path / "copy.pol.h5"
    shutil.copy(honest_raw_proof, dst)
    return dst
