"""Fixtures for the forgery tests: a 40-step honest victim proof and the attacker's key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def victim(honest_raw_proof: Path):
    from scripts.attacks import load_victim

    return load_victim(honest_raw_proof)


@pytest.fixture(scope="session")
def attacker(keys: dict):
    from pol.keys import load_signing_key

    return load_signing_key(keys["other_key"])


@pytest.fixture(scope="session")
def judge_forgery(attacker):
    """Verify at default settings (all 4 segments of a 40-step run), the attacker's key trusted."""
    from scripts.bench_security import judge

    def run(forgery, **kw):
        return judge(forgery, bytes(attacker.verify_key), seed=0, **kw)

    return run
