"""The integer arithmetic of the reference backend against py-ecc, and point decoding."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc import optimized_bls12_381 as o
from py_ecc.bls.point_compression import compress_G1
from zk_testutil import non_subgroup_point, off_curve_x

from zk import _bls
from zk._backend_pyecc import from_pyecc, to_pyecc

G = _bls.G1_GEN


def test_generator_and_multiplication_match_py_ecc() -> None:
    assert from_pyecc(o.G1) == G
    rng = random.Random(1)
    for k in [1, 2, 3, 255, 2**64 + 1, _bls.R - 1, rng.randrange(_bls.R)]:
        assert _bls.mul(G, k) == from_pyecc(o.multiply(o.G1, k))
    assert _bls.mul(G, _bls.R) is None
    assert _bls.mul(G, 0) is None


def test_add_neg_and_doubling_edge_cases() -> None:
    p2 = _bls.mul(G, 2)
    assert _bls.add(G, G) == p2
    assert _bls.add(G, _bls.neg(G)) is None
    assert _bls.add(None, G) == G
    assert from_pyecc(o.add(to_pyecc(G), to_pyecc(p2))) == _bls.add(G, p2)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=-(2**20), max_value=2**20), min_size=1, max_size=12))
def test_msm_equals_naive_sum_small_signed(ks: list[int]) -> None:
    pts = [_bls.mul(G, 7 * i + 3) for i in range(len(ks))]
    expected = None
    for p, k in zip(pts, ks):
        expected = _bls.add(expected, _bls.mul(p, k))
    assert _bls.msm(pts, ks) == expected


def test_msm_full_size_scalars() -> None:
    rng = random.Random(2)
    pts = [_bls.mul(G, rng.randrange(1, _bls.R)) for _ in range(20)]
    ks = [rng.randrange(_bls.R) for _ in pts]
    expected = None
    for p, k in zip(pts, ks):
        expected = _bls.add(expected, _bls.mul(p, k))
    assert _bls.msm(pts, ks) == expected


def test_msm_with_repeated_and_opposite_points() -> None:
    # Same point twice in one bucket forces the doubling path; P and -P cancel.
    pts = [G, G, _bls.neg(G), G]
    assert _bls.msm(pts, [5, 5, 5, 0]) == _bls.mul(G, 5)
    assert _bls.msm([G, _bls.neg(G)] * 3, [1] * 6) is None


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=_bls.R - 1))
def test_compress_matches_py_ecc_and_round_trips(k: int) -> None:
    p = _bls.mul(G, k)
    enc = _bls.compress(p)
    assert enc == compress_G1(to_pyecc(p)).to_bytes(48, "big")
    assert _bls.decompress(enc) == p


def test_identity_encoding() -> None:
    enc = _bls.compress(None)
    assert enc == b"\xc0" + bytes(47)
    assert _bls.decompress(enc) is None
    with pytest.raises(ValueError, match="infinity"):
        _bls.decompress(b"\xc0" + bytes(46) + b"\x01")


def test_decompress_rejects_off_curve_and_outside_subgroup() -> None:
    with pytest.raises(ValueError, match="not on the curve"):
        _bls.decompress(off_curve_x())
    enc, pt = non_subgroup_point()
    assert _bls.is_on_curve(pt)
    with pytest.raises(ValueError, match="subgroup"):
        _bls.decompress(enc)


@pytest.mark.parametrize(
    "data, message",
    [
        (bytes(48), "compression flag"),
        (b"\x80" + bytes(46), "48 bytes"),
        (bytes([0x80 | 0x1A]) + b"\xff" * 47, "field element"),
    ],
)
def test_decompress_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _bls.decompress(data)


def test_fast_subgroup_check_agrees_with_multiplying_by_r() -> None:
    rng = random.Random(11)
    cofactor = 0x396C8C005555E1568C00AAAB0000AAAB
    points = [(0, 2), (0, _bls.P - 2)]  # order 3: on the curve, outside G1
    while len(points) < 20:
        x = rng.randrange(_bls.P)
        rhs = (x**3 + 4) % _bls.P
        y = pow(rhs, (_bls.P + 1) // 4, _bls.P)
        if y * y % _bls.P == rhs:
            points.append((x, y))
    points += [_bls.mul_raw(p, cofactor) for p in points[2:8]]  # cleared: inside G1
    verdicts = [(_bls.in_subgroup(p), _bls.in_subgroup_slow(p)) for p in points]
    assert all(a == b for a, b in verdicts)
    assert sum(a for a, _ in verdicts) == 6  # exactly the cleared ones
