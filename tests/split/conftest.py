"""Fixtures for the split-learning tests: node keys and small honest runs (real processes).

Every run is short (digits, 20 steps, k=5) so the whole directory stays within its time budget;
runs are shared per test session (per xdist worker).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL = ["--steps", "20", "--every", "5", "--micro-batches", "2"]


@pytest.fixture(scope="session")
def node_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pol.keys import generate_keypair

    d = tmp_path_factory.mktemp("split-keys")
    for rank in range(3):
        generate_keypair(d / f"node{rank}")
    return d


def train(out: Path, keys: Path, *args: str) -> Path:
    from scripts.attacks_split import train_run

    result = train_run(out, keys, args=[*args, *SMALL])
    assert result.ok, result.first_failure.stderr[-2000:] if result.first_failure else ""
    return out


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory: pytest.TempPathFactory, node_keys: Path) -> Path:
    """digits-mlp cut in 3 stages, plain split (labels at node 2)."""
    return train(tmp_path_factory.mktemp("mlp3") / "run", node_keys, "--task", "digits-mlp", "--stages", "3")


@pytest.fixture(scope="session")
def cnn_u_run(tmp_path_factory: pytest.TempPathFactory, node_keys: Path) -> Path:
    """digits-cnn (BatchNorm, dropout) cut in 3 stages, U-shaped: node 0 holds stages 0 and 2."""
    return train(tmp_path_factory.mktemp("cnn3u") / "run", node_keys, "--task", "digits-cnn", "--stages", "3",
                 "--labels-at", "first")


@pytest.fixture()
def mlp_copy(tmp_path: Path, mlp_run: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(mlp_run, dst)
    return dst
