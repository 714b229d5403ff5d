"""Generator derivation, identity and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from zk import DEFAULT_DST, GeneratorSet, get_backend
from zk.generators import H_MESSAGE, cache_path, g_message, genset_id


def test_genset_id_depends_on_size_and_dst() -> None:
    a = genset_id(64)
    assert a == genset_id(64, DEFAULT_DST) and len(a) == 32
    assert a != genset_id(65)
    assert a != genset_id(64, b"OTHER-DST")
    with pytest.raises(ValueError):
        genset_id(0)


def test_generators_are_hash_to_curve_of_documented_messages(tmp_path: Path) -> None:
    be = get_backend("pyecc")
    gs = GeneratorSet.load(4, backend=be, cache_dir=tmp_path)
    assert be.encode(gs.g[2]) == be.encode(be.hash_to_curve(g_message(2), DEFAULT_DST))
    assert be.encode(gs.h) == be.encode(be.hash_to_curve(H_MESSAGE, DEFAULT_DST))
    assert len({be.encode(p) for p in [*gs.g, gs.h]}) == 5


def test_cache_round_trip_and_prefix_property(tmp_path: Path) -> None:
    be = get_backend("pyecc")
    first = GeneratorSet.load(6, backend=be, cache_dir=tmp_path)
    assert cache_path(6, DEFAULT_DST, tmp_path).exists()
    again = GeneratorSet.load(6, backend=be, cache_dir=tmp_path)
    assert [be.encode(p) for p in again.g] == [be.encode(p) for p in first.g]
    smaller = GeneratorSet.load(3, backend=be, cache_dir=tmp_path)
    assert [be.encode(p) for p in smaller.g] == [be.encode(p) for p in first.g[:3]]


def test_corrupt_or_forged_cache_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    be = get_backend("pyecc")
    good = GeneratorSet.load(4, backend=be, cache_dir=tmp_path)
    path = cache_path(4, DEFAULT_DST, tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # body no longer matches its digest
    path.write_bytes(bytes(data))
    again = GeneratorSet.load(4, backend=be, cache_dir=tmp_path)
    assert [be.encode(p) for p in again.g] == [be.encode(p) for p in good.g]
    # a cache for another DST copied over this one's name is refused by its header
    other = GeneratorSet.derive(4, b"ANOTHER-DST", be)
    from zk.generators import write_cache_file

    write_cache_file(other, path)
    third = GeneratorSet.load(4, backend=be, cache_dir=tmp_path)
    assert be.encode(third.h) == be.encode(good.h) != be.encode(other.h)
