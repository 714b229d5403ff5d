"""Shared helpers for the zk tests (imported by module name; tests/zk has no __init__)."""

from __future__ import annotations

import pytest

from zk import _bls
from zk.backend import available_backends

SMALL = 64  # values per chunk in unit tests: keeps the pure-Python backend fast
BACKENDS = available_backends()
needs_arkworks = pytest.mark.skipif("arkworks" not in BACKENDS, reason="py-arkworks-bls12381 not installed")


def off_curve_x() -> bytes:
    """Compressed bytes whose x has no y on the curve."""
    for x in range(1, 1000):
        rhs = (x**3 + 4) % _bls.P
        if pow(rhs, (_bls.P - 1) // 2, _bls.P) != 1:
            raw = bytearray(x.to_bytes(48, "big"))
            raw[0] |= 0x80
            return bytes(raw)
    raise AssertionError("unreachable")


def non_subgroup_point() -> tuple[bytes, tuple[int, int]]:
    """A point on y^2 = x^3 + 4 that is not in the order-r subgroup."""
    for x in range(1, 1000):
        rhs = (x**3 + 4) % _bls.P
        y = pow(rhs, (_bls.P + 1) // 4, _bls.P)
        if y * y % _bls.P == rhs and not _bls.in_subgroup((x, y)):
            return _bls.compress((x, y)), (x, y)
    raise AssertionError("unreachable")
