"""Fast backend: py-arkworks-bls12381 (Rust). Byte-identical to the reference backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from py_arkworks_bls12381 import G1Point, Scalar

from zk.backend import CURVE_ORDER as _R
from zk.errors import PointDecodeError


class _Prepared:
    def __init__(self, gens: Sequence[G1Point], h: G1Point) -> None:
        self.gens = list(gens)
        self.neg_gens = [-g for g in self.gens]
        self.h = h
        self.small: list[Scalar] = []

    def small_scalars(self, max_abs: int) -> list[Scalar]:
        """Scalar objects for 0..max_abs, cached (building a Scalar is the slow part)."""
        if len(self.small) <= max_abs:
            start = len(self.small)
            self.small.extend(Scalar(i) for i in range(start, max_abs + 1))
        return self.small


def _scalar(k: int) -> Scalar:
    return Scalar(k % _R)


class ArkworksBackend:
    name = "arkworks"

    def identity(self) -> G1Point:
        return G1Point.identity()

    def add(self, a: G1Point, b: G1Point) -> G1Point:
        return a + b

    def neg(self, a: G1Point) -> G1Point:
        return -a

    def mul(self, a: G1Point, k: int) -> G1Point:
        return a * _scalar(k)

    def msm(self, points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point:
        pts: list[G1Point] = []
        ks: list[Scalar] = []
        half = _R // 2
        for pt, k in zip(points, scalars, strict=True):
            k %= _R
            if k == 0:
                continue
            if k > half:  # small negative scalars stay small (arkworks is faster on short scalars)
                pts.append(-pt)
                ks.append(Scalar(_R - k))
            else:
                pts.append(pt)
                ks.append(Scalar(k))
        if not pts:
            return G1Point.identity()
        if len(pts) <= 2:  # cheaper than the MSM set-up
            acc = pts[0] * ks[0]
            return acc + pts[1] * ks[1] if len(pts) == 2 else acc
        return G1Point.multiexp_unchecked(pts, ks)

    def eq(self, a: G1Point, b: G1Point) -> bool:
        return bool(a == b)

    def encode(self, a: G1Point) -> bytes:
        return bytes(a.to_compressed_bytes())

    def decode(self, data: bytes) -> G1Point:
        data = bytes(data)
        if len(data) != 48:
            raise PointDecodeError(f"invalid G1 point: a compressed G1 point is 48 bytes, got {len(data)}")
        try:
            pt = G1Point.from_compressed_bytes(data)
        except Exception as exc:  # the extension raises plain exceptions
            raise PointDecodeError(f"invalid G1 point: {exc}") from None
        # from_compressed_bytes checks the curve equation and subgroup membership itself
        # (tests/zk/test_backends.py feeds it off-curve and non-subgroup points).
        if bytes(pt.to_compressed_bytes()) != data:  # refuse non-canonical encodings
            raise PointDecodeError("invalid G1 point: non-canonical encoding")
        return pt

    def hash_to_curve(self, msg: bytes, dst: bytes) -> G1Point:
        return G1Point.hash_to_curve(msg, dst)

    def to_xy(self, a: G1Point) -> bytes:
        return bytes(a.to_xy_bytes_be())

    def from_xy_trusted(self, buf: bytes, count: int) -> list[G1Point]:
        data = bytes(buf)
        f = G1Point.from_xy_bytes_unchecked_be
        return [f(data[o : o + 96]) for o in range(0, 96 * count, 96)]

    def prepare(self, gens: Sequence[G1Point], h: G1Point) -> _Prepared:
        return _Prepared(gens, h)

    def commit_rows(self, prepared: _Prepared, values: np.ndarray, blindings: Sequence[int]) -> list[G1Point]:
        values = np.ascontiguousarray(values, dtype=np.int64)
        if values.ndim != 2 or values.shape[1] > len(prepared.gens):
            raise ValueError("values must be (rows, <= number of generators)")
        mags = np.abs(values)
        max_abs = int(mags.max()) if values.size else 0
        table = prepared.small_scalars(min(max_abs, 1 << 17))
        big = max_abs >= len(table)
        gens, neg_gens, h = prepared.gens, prepared.neg_gens, prepared.h
        out: list[G1Point] = []
        for row, mrow, blind in zip(values, mags, blindings):
            pos = np.flatnonzero(row > 0).tolist()
            neg = np.flatnonzero(row < 0).tolist()
            mlist = mrow.tolist()
            pts = [gens[i] for i in pos] + [neg_gens[i] for i in neg]
            if big:
                ks = [Scalar(mlist[i]) for i in pos] + [Scalar(mlist[i]) for i in neg]
            else:
                ks = [table[mlist[i]] for i in pos] + [table[mlist[i]] for i in neg]
            # The blinding is a full-size scalar: kept out of the small-scalar MSM (faster).
            acc = h * _scalar(blind)
            if pts:
                acc = acc + G1Point.multiexp_unchecked(pts, ks)
            out.append(acc)
        return out
