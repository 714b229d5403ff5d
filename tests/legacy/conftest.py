"""Fixtures for the legacy-import tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from legacy_layout import make_legacy_dir  # noqa: E402


@pytest.fixture()
def legacy_dir(tmp_path: Path) -> Path:
    return make_legacy_dir(tmp_path / "proof" / "digits_test")
