"""Fixtures for published-weights tests: small recorded runs, exports, and a forged proof."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pub_models.py: --model builders for these tests


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, honest_proof: Path) -> Path:
    """The honest proof's final weights, exported with ``pol.publish.export_proof``."""
    from pol.publish import export_proof

    out = tmp_path_factory.mktemp("exported") / "model.safetensors"
    export_proof(honest_proof, out)
    return out
