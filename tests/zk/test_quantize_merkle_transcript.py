"""Quantisation, the Merkle tree over chunk commitments, and the Fiat-Shamir transcript."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk import Layout, Quantizer
from zk.merkle import merkle_path, merkle_root, verify_path
from zk.quantize import flatten
from zk.transcript import Transcript


def test_quantize_rounds_scales_and_clips() -> None:
    q = Quantizer(scale_bits=12, bits=16)
    vals, clipped = q.quantize(np.array([0.0, 1.0, -1.0, 0.5 / 4096, 1.5 / 4096, 100.0, -100.0]))
    assert vals.tolist() == [0, 4096, -4096, 0, 2, 32767, -32768]  # round half to even
    assert clipped == 2
    assert q.dequantize(vals)[1] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        q.quantize(np.array([np.nan]))
    with pytest.raises(ValueError):
        Quantizer(bits=1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-7.9, max_value=7.9), min_size=1, max_size=50))
def test_quantisation_error_is_at_most_half_a_step(xs: list[float]) -> None:
    q = Quantizer()
    vals, clipped = q.quantize(np.array(xs))
    assert clipped == 0
    assert np.max(np.abs(q.dequantize(vals) - np.array(xs))) <= 0.5 / 4096 + 1e-12


def test_flatten_orders_by_name_and_records_layout() -> None:
    layout, vec, _ = flatten({"b": np.ones((2,)), "a": np.zeros((1, 2))}, Quantizer())
    assert layout == Layout(("a", "b"), ((1, 2), (2,)))
    assert layout.offsets == (0, 2) and layout.total == 4
    assert vec.tolist() == [0, 0, 4096, 4096]


def test_layout_sizes_are_exact_and_absurd_layouts_are_refused() -> None:
    from zk.quantize import MAX_VALUES

    big = Layout(("a", "b"), ((1 << 20, 1 << 19), (3,)))  # 2^39 + 3: past int32, exact
    assert big.sizes == (1 << 39, 3) and big.total == (1 << 39) + 3 and big.offsets == (0, 1 << 39)
    # 2^32 * (2^32 + 1) wraps to 2^32 in int64; 2^32 * 2^32 wraps to 0 and would hide beside a small tensor
    for shapes in [((1 << 32, (1 << 32) + 1),), ((1 << 32, 1 << 32), (1000,))]:
        with pytest.raises(ValueError, match="more than"):
            Layout(tuple("ab"[: len(shapes)]), shapes)
    assert Layout(("a",), ((MAX_VALUES,),)).total == MAX_VALUES
    with pytest.raises(ValueError):
        Layout(("a",), ((MAX_VALUES + 1,),))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
def test_merkle_paths_verify_at_every_index(count: int) -> None:
    leaves = [bytes([i]) * 48 for i in range(count)]
    root = merkle_root(leaves)
    for i in range(count):
        path = merkle_path(leaves, i)
        assert verify_path(root, count, i, leaves[i], path)
        assert not verify_path(root, count, i, b"\xff" * 48, path)
        if count > 1:
            assert not verify_path(root, count, (i + 1) % count, leaves[i], path)
    assert not verify_path(root, count + 1, 0, leaves[0], merkle_path(leaves, 0))


def test_merkle_root_binds_count_and_order() -> None:
    a, b = b"a" * 48, b"b" * 48
    assert merkle_root([a, b]) != merkle_root([b, a])
    assert merkle_root([a, b, b]) != merkle_root([a, b])
    with pytest.raises(ValueError):
        merkle_root([])


def test_transcript_is_deterministic_and_sensitive() -> None:
    def run(proto: bytes, label: bytes, data: bytes) -> int:
        t = Transcript(proto)
        t.append(label, data)
        return t.challenge_scalar(b"e")

    base = run(b"p", b"x", b"data")
    assert base == run(b"p", b"x", b"data")
    assert base != run(b"q", b"x", b"data")
    assert base != run(b"p", b"y", b"data")
    assert base != run(b"p", b"x", b"datb")
    # framing: moving bytes between label and data changes the challenge
    assert run(b"p", b"xd", b"ata") != base
    t = Transcript(b"p")
    first, second = t.challenge_int(b"rho"), t.challenge_int(b"rho")
    assert first != second and 0 < first < 2**128
