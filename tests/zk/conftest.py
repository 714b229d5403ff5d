"""Fixtures for the zk tests: small generator sets (py-ecc is slow), a private cache dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from zk_testutil import BACKENDS, SMALL

from zk import Committer, Params, get_backend


@pytest.fixture(scope="session", autouse=True)
def zk_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every zk test uses a private generator cache (never the user's ~/.cache)."""
    d = tmp_path_factory.mktemp("zk-cache")
    old = os.environ.get("POL_ZK_CACHE")
    os.environ["POL_ZK_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("POL_ZK_CACHE", None)
    else:
        os.environ["POL_ZK_CACHE"] = old


@pytest.fixture(scope="session", params=BACKENDS)
def committer(request: pytest.FixtureRequest, zk_cache: Path) -> Committer:
    """A committer with 64-value chunks, once per available backend."""
    c = Committer(Params(chunk_size=SMALL), get_backend(request.param), zk_cache)
    c.generators  # load once per session
    return c


@pytest.fixture(scope="session")
def ref_committer(zk_cache: Path) -> Committer:
    c = Committer(Params(chunk_size=SMALL), get_backend("pyecc"), zk_cache)
    c.generators
    return c
