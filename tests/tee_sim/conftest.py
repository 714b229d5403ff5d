"""Fixtures for the tee_sim tests: one honest world a test can then break."""

from __future__ import annotations

import pytest
from tee_helpers import FakeClock, World, make_world


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    return make_world(clock)
