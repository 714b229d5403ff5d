"""Fixtures for the federated-workers tests: keys, a 4-worker plan, a trainer, round contexts,
and one real multi-process job (replay_verified and fedavg under attack) shared by several tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

WORKERS = 4


@pytest.fixture(scope="session")
def wk_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pol.keys import generate_keypair

    d = tmp_path_factory.mktemp("wk_keys")
    for name in ["coordinator", "other"] + [f"worker{w}" for w in range(1, WORKERS + 2)]:
        generate_keypair(d / name)
    return d


@pytest.fixture(scope="session")
def plan4(wk_keys: Path) -> Any:
    from pol.keys import load_signing_key
    from pol.workers.config import RunSpec
    from pol.workers.coordinator import build_plan

    keys = {w: bytes(load_signing_key(wk_keys / f"worker{w}.key").verify_key) for w in range(1, WORKERS + 1)}
    coordinator = bytes(load_signing_key(wk_keys / "coordinator.key").verify_key)
    return build_plan(RunSpec(out="unused.h5", rounds=3, local_steps=4), keys, coordinator, "cpu")


@pytest.fixture(scope="session")
def trainer(plan4: Any) -> Any:
    from pol.tasks import load_data
    from pol.workers.local import LocalTrainer

    return LocalTrainer(plan4, load_data("digits-mlp").train)


@pytest.fixture(scope="session")
def global0(plan4: Any) -> dict:
    from pol.tasks import seeded_weights

    return seeded_weights("digits-mlp", {}, plan4.seed)


@pytest.fixture()
def make_ctx(plan4: Any, trainer: Any, global0: dict, wk_keys: Path) -> Any:
    from pol.hashing import weights_digest
    from pol.keys import load_signing_key
    from pol.workers.behaviour import RoundContext

    def make(worker: int, round_index: int = 0, weights: dict | None = None, memory: dict | None = None) -> Any:
        w = global0 if weights is None else weights
        return RoundContext(plan4, worker, round_index, w, weights_digest(w), trainer,
                            load_signing_key(wk_keys / f"worker{worker}.key"), {} if memory is None else memory)
    return make


@pytest.fixture(scope="session")
def attack_job(tmp_path_factory: pytest.TempPathFactory, wk_keys: Path) -> dict[str, Any]:
    """A real job (coordinator + 4 worker processes): the same attackers (worker 3 model
    replacement, worker 4 free-rider) under replay_verified and under plain fedavg."""
    from wk_jobs import run_job

    d = tmp_path_factory.mktemp("attack_job")
    behaviours = {"3": "model-replacement", "4": "free-rider-zero"}
    return run_job(d, wk_keys, [dict(out=str(d / "verified.h5"), aggregator="replay_verified", rounds=3, local_steps=4,
                                     behaviours=behaviours),
                                dict(out=str(d / "fedavg.h5"), aggregator="fedavg", rounds=3, local_steps=4,
                                     behaviours=behaviours)], verbose=False)
