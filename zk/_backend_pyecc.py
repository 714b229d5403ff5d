"""Reference backend: py-ecc's curve constants and hash-to-curve, integer arithmetic in _bls.

Points are affine ``(x, y)`` int tuples, ``None`` for infinity. :func:`to_pyecc` and
:func:`from_pyecc` convert at the boundary with py-ecc's own (optimized, Jacobian FQ) points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from zk import _bls
from zk.errors import PointDecodeError

_DIGIT_BITS = 8
_SCALAR_LEVELS = 32  # signed 8-bit digits of any scalar < r


def to_pyecc(pt: tuple[int, int] | None) -> Any:
    from py_ecc.optimized_bls12_381 import FQ, Z1

    if pt is None:
        return Z1
    return (FQ(pt[0]), FQ(pt[1]), FQ(1))


def from_pyecc(pt: Any) -> tuple[int, int] | None:
    from py_ecc.optimized_bls12_381 import is_inf, normalize

    if is_inf(pt):
        return None
    x, y = normalize(pt)
    return (int(x), int(y))


class _Prepared:
    """Generators plus their ``2^(8l)`` multiples, built lazily as digit levels are needed."""

    def __init__(self, gens: Sequence[tuple[int, int]], h: tuple[int, int]) -> None:
        self.gens = list(gens)
        self.h = h
        self.tables: list[list[tuple[int, int]]] = [self.gens]
        self.h_tables = [t[0] for t in _bls.shifted_tables([h], _DIGIT_BITS, _SCALAR_LEVELS)]
        self.ensure_levels(2)  # enough for 16-bit values; wider values extend it on demand

    def ensure_levels(self, levels: int) -> None:
        if levels > len(self.tables):
            self.tables = _bls.shifted_tables(self.gens, _DIGIT_BITS, levels)


class PyEccBackend:
    name = "pyecc"

    def identity(self) -> None:
        return None

    def add(self, a: Any, b: Any) -> Any:
        return _bls.add(a, b)

    def neg(self, a: Any) -> Any:
        return _bls.neg(a)

    def mul(self, a: Any, k: int) -> Any:
        return _bls.mul(a, k)

    def msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any:
        return _bls.msm(points, scalars)

    def eq(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def encode(self, a: Any) -> bytes:
        return _bls.compress(a)

    def decode(self, data: bytes) -> Any:
        try:
            return _bls.decompress(bytes(data))
        except ValueError as exc:
            raise PointDecodeError(f"invalid G1 point: {exc}") from None

    def hash_to_curve(self, msg: bytes, dst: bytes) -> Any:
        from py_ecc.bls.hash_to_curve import hash_to_G1

        return from_pyecc(hash_to_G1(msg, dst, hashlib.sha256))

    def to_xy(self, a: Any) -> bytes:
        if a is None:
            raise ValueError("the point at infinity has no affine coordinates")
        return _bls.xy_bytes(a)

    def from_xy_trusted(self, buf: bytes, count: int) -> list[Any]:
        return _bls.points_from_xy(buf, count)  # type: ignore[return-value]

    def prepare(self, gens: Sequence[Any], h: Any) -> _Prepared:
        return _Prepared(gens, h)

    def commit_rows(self, prepared: _Prepared, values: np.ndarray, blindings: Sequence[int]) -> list[Any]:
        values = np.ascontiguousarray(values, dtype=np.int64)
        if values.ndim != 2 or values.shape[1] > len(prepared.gens):
            raise ValueError("values must be (rows, <= number of generators)")
        max_abs = int(np.abs(values).max()) if values.size else 0
        prepared.ensure_levels(_bls.digit_levels(max(max_abs, 1), _DIGIT_BITS))
        return _bls.commit_chunks(prepared.tables, prepared.h_tables, values, blindings, _DIGIT_BITS)
