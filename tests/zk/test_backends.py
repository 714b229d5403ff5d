"""Both curve backends: selection, byte-identical outputs, strict decoding."""

from __future__ import annotations

import numpy as np
import pytest
from zk_testutil import SMALL, needs_arkworks, non_subgroup_point, off_curve_x

from zk import (
    BackendUnavailableError,
    Committer,
    Context,
    Params,
    PointDecodeError,
    get_backend,
    prove_binding,
    prove_opening,
    verify_binding,
    verify_opening,
)
from zk.backend import BACKEND_ENV, Backend


def test_env_var_selects_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "pyecc")
    assert get_backend().name == "pyecc"
    monkeypatch.setenv(BACKEND_ENV, "nonsense")
    with pytest.raises(BackendUnavailableError, match="unknown zk backend"):
        get_backend()
    assert get_backend("pyecc").name == "pyecc"  # an explicit name wins over the env var


@needs_arkworks
def test_auto_prefers_arkworks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "auto")
    assert get_backend().name == "arkworks"


def test_backends_satisfy_the_protocol(committer: Committer) -> None:
    be = committer.backend
    assert isinstance(be, Backend)
    g = committer.generators.g[0]
    assert be.eq(be.add(g, be.neg(g)), be.identity())
    assert be.encode(be.mul(g, 3)) == be.encode(be.msm([g, g], [1, 2]))
    assert be.encode(be.decode(be.encode(g))) == be.encode(g)


def test_decode_rejects_off_curve_and_non_subgroup(committer: Committer) -> None:
    be = committer.backend
    with pytest.raises(PointDecodeError):
        be.decode(off_curve_x())
    with pytest.raises(PointDecodeError):
        be.decode(non_subgroup_point()[0])
    with pytest.raises(PointDecodeError):
        be.decode(b"\x80" * 47)


@needs_arkworks
def test_backends_are_byte_identical_and_verify_each_other(zk_cache) -> None:
    ref = Committer(Params(chunk_size=SMALL), get_backend("pyecc"), zk_cache)
    fast = Committer(Params(chunk_size=SMALL), get_backend("arkworks"), zk_cache)
    pr, pf = get_backend("pyecc"), get_backend("arkworks")
    for msg in (b"", b"abc", b"pol-zk/G/\x00"):
        assert pr.encode(pr.hash_to_curve(msg, b"DST-TEST")) == pf.encode(pf.hash_to_curve(msg, b"DST-TEST"))
    rng = np.random.default_rng(7)
    v = rng.integers(-(2**15), 2**15, 150)  # 3 chunks, the last one partial
    blind = [11, 22, 33]
    c_ref, _ = ref.commit_values(v, blind)
    c_fast, _ = fast.commit_values(v, blind)
    assert c_ref == c_fast and c_ref.root == c_fast.root
    ctx = Context(b"\x01" * 32, 2)
    verify_opening(ref, ctx, c_fast, prove_opening(fast, ctx, c_fast, v, blind, challenge=b"c"), challenge=b"c")
    verify_opening(fast, ctx, c_ref, prove_opening(ref, ctx, c_ref, v, blind, challenge=b"c"), challenge=b"c")
    verify_binding(ref, ctx, c_fast, v, prove_binding(fast, ctx, c_fast, blind))
    verify_binding(fast, ctx, c_ref, v, prove_binding(ref, ctx, c_ref, blind))


def test_commit_rows_matches_generic_msm(committer: Committer) -> None:
    be, gens = committer.backend, committer.generators
    rng = np.random.default_rng(3)
    rows = rng.integers(-(2**17), 2**17, (2, SMALL))
    rows[0, :5] = 0
    blind = [123456789, 2**250 + 17]
    got = be.commit_rows(gens.prepared, rows, blind)
    for row, b, pt in zip(rows, blind, got):
        expect = be.msm([*gens.g, gens.h], [*row.tolist(), b])
        assert be.encode(pt) == be.encode(expect)
