"""Canonical digests, Merkle trees, keys, sampler, schedules and codec."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pol import codec
from pol.errors import KeyFileError, PlanError, ProofFormatError
from pol.hashing import state_digest, weights_digest
from pol.keys import (
    fingerprint,
    generate_keypair,
    load_signing_key,
    load_verify_key,
    resolve_trusted_key,
)
from pol.merkle import merkle_proof, merkle_root, verify_merkle_proof
from pol.sampler import BatchSchedule
from pol.schedule import lr_at, validate


def test_state_digest_ignores_insertion_order_but_binds_everything_else() -> None:
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    base = state_digest(a)
    assert state_digest(dict(reversed(list(a.items())))) == base
    assert state_digest({"w2": a["w"], "b": a["b"]}) != base                      # name
    assert state_digest({"w": a["w"].astype(np.float64), "b": a["b"]}) != base    # dtype
    assert state_digest({"w": a["w"].reshape(3, 2), "b": a["b"]}) != base          # shape
    w = a["w"].copy()
    w[1, 2] = np.nextafter(w[1, 2], np.float32(100))
    assert state_digest({"w": w, "b": a["b"]}) != base                             # one ulp of data
    assert state_digest({"s": np.asarray(1.0)}) != state_digest({"s": np.asarray([1.0])})  # 0-d vs 1-d
    assert weights_digest(a) != state_digest(a)                                     # domain separation


def test_state_digest_is_layout_independent() -> None:
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert state_digest({"w": w}) == state_digest({"w": np.asfortranarray(w)})
    assert state_digest({"w": w}) == state_digest({"w": w.astype(">f4")})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=33), st.data())
def test_merkle_proofs_verify_and_detect_tampering(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, i)
    assert verify_merkle_proof(leaves[i], proof, root)
    assert not verify_merkle_proof(leaves[i] + b"x", proof, root)
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        if leaves[j] != leaves[i]:
            assert not verify_merkle_proof(leaves[j], proof, root)


def test_merkle_root_binds_order() -> None:
    leaves = [bytes([i]) for i in range(5)]
    assert merkle_root(leaves) != merkle_root(leaves[::-1])
    assert merkle_root(leaves) != merkle_root(leaves[:-1])


def test_keygen_modes_fingerprints_and_errors(tmp_path: Path) -> None:
    sk_path, pk_path = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(os.stat(sk_path).st_mode) == 0o600
    sk, vk = load_signing_key(sk_path), load_verify_key(pk_path)
    assert bytes(sk.verify_key) == bytes(vk)
    fpr = fingerprint(vk)
    assert len(fpr) == 40
    trusted = resolve_trusted_key(fpr)
    assert trusted.verify_key is None and trusted.matches(bytes(vk))
    assert resolve_trusted_key(str(pk_path)).matches(bytes(vk))
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(tmp_path / "k")
    with pytest.raises(KeyFileError, match="public key file"):
        load_signing_key(pk_path)
    with pytest.raises(KeyFileError, match="not found"):
        load_verify_key(tmp_path / "missing.pub")
    os.chmod(sk_path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signing_key(sk_path)


def test_batch_schedule_is_seeded_permutation_per_epoch() -> None:
    s = BatchSchedule(seed=3, num_samples=100, batch_size=10)
    epoch0 = np.concatenate([s.indices(t) for t in range(10)])
    epoch1 = np.concatenate([s.indices(t) for t in range(10, 20)])
    assert sorted(epoch0.tolist()) == list(range(100)) == sorted(epoch1.tolist())
    assert not np.array_equal(epoch0, epoch1)
    assert np.array_equal(BatchSchedule(3, 100, 10).block(0, 20), s.block(0, 20))
    assert not np.array_equal(BatchSchedule(4, 100, 10).block(0, 10), s.block(0, 10))
    with pytest.raises(PlanError):
        BatchSchedule(0, 5, 10)


def test_lr_schedules() -> None:
    assert lr_at({"kind": "constant", "lr": 0.1}, 999) == 0.1
    step = {"kind": "step", "lr": 1.0, "milestones": [10, 20], "gamma": 0.1}
    assert [lr_at(step, t) for t in (0, 10, 25)] == pytest.approx([1.0, 0.1, 0.01])
    cos = {"kind": "cosine", "lr": 1.0, "min_lr": 0.0, "total_steps": 100, "warmup_steps": 10}
    assert lr_at(cos, 0) == pytest.approx(0.1) and lr_at(cos, 10) == pytest.approx(1.0)
    assert lr_at(cos, 100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(PlanError):
        validate({"kind": "warp"})
    with pytest.raises(PlanError):
        lr_at({"kind": "table", "values": [0.1]}, 1)


_DTYPES = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.float16])
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.booleans(), st.floats(0, 2, allow_nan=False))
def test_codec_round_trip_is_bitwise(data: st.DataObject, with_previous: bool, lr_sum: float) -> None:
    names = data.draw(st.lists(st.sampled_from(["model/w", "model/b", "optim/state/w/momentum_buffer",
                                                "optim/lr", "rng/x", "meta/step"]), unique=True, min_size=1))
    state, previous = {}, {}
    for name in names:
        shape = data.draw(_SHAPES)
        dtype = np.float32 if name != "meta/step" and data.draw(st.booleans()) else data.draw(_DTYPES)
        state[name] = data.draw(hnp.arrays(dtype, shape))
        if with_previous and data.draw(st.booleans()):
            previous[name] = data.draw(hnp.arrays(dtype, shape))  # NaN and inf patterns included
    prev = previous if with_previous else None
    encoded = codec.encode_checkpoint(state, prev, lr_sum)
    out = codec.decode_checkpoint(encoded, prev)
    assert sorted(out) == sorted(state)
    for name, arr in state.items():
        assert out[name].dtype == arr.dtype and out[name].shape == arr.shape
        assert out[name].tobytes() == arr.tobytes()  # bitwise, NaN payloads included


def test_codec_compresses_small_updates_and_predicts_momentum() -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=20000).astype(np.float32)
    m0 = rng.normal(size=20000).astype(np.float32) * 0.01
    w1 = (w0 - 0.01 * m0).astype(np.float32)
    prev = {"model/w": w0, "optim/state/w/momentum_buffer": m0}
    cur = {"model/w": w1, "optim/state/w/momentum_buffer": m0}
    raw = sum(v.nbytes for v in cur.values())
    enc = codec.encode_checkpoint(cur, prev, lr_sum=0.01)
    assert len(enc.deltas) + len(enc.plain) < 0.5 * raw
    assert codec.decode_checkpoint(enc, prev)["model/w"].tobytes() == w1.tobytes()


def test_codec_rejects_corrupt_or_inconsistent_input() -> None:
    state = {"model/w": np.arange(10, dtype=np.float32)}
    enc = codec.encode_checkpoint(state, state, 0.0)
    with pytest.raises(ProofFormatError):
        codec.decode_checkpoint(codec.Encoded(enc.index, enc.deltas[:-3], enc.plain), state)
    with pytest.raises(ProofFormatError, match="base"):
        codec.decode_checkpoint(enc, None)
    index = zstandard.ZstdDecompressor().decompress(enc.index)
    bad_index = zstandard.ZstdCompressor().compress(index.replace(b'"count": 10', b'"count": 11'))
    with pytest.raises(ProofFormatError, match="counts"):
        codec.decode_checkpoint(codec.Encoded(bad_index, enc.deltas, enc.plain), state)
    with pytest.raises(ProofFormatError, match="index"):
        codec.decode_checkpoint(codec.Encoded(zstandard.ZstdCompressor().compress(b"{not json"), enc.deltas, enc.plain), state)
    with pytest.raises(ProofFormatError, match="corrupt"):
        codec.decode_checkpoint(codec.Encoded(b"{not zstd", enc.deltas, enc.plain), state)
    # the index is strict JSON: nesting bounded (no RecursionError), no duplicate keys
    deep = zstandard.ZstdCompressor().compress(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ProofFormatError, match="checkpoint index"):
        codec.decode_checkpoint(codec.Encoded(deep, enc.deltas, enc.plain), state)
    twice = zstandard.ZstdCompressor().compress(index.replace(b'"count": 10', b'"count": 11, "count": 10'))
    with pytest.raises(ProofFormatError, match="checkpoint index"):
        codec.decode_checkpoint(codec.Encoded(twice, enc.deltas, enc.plain), state)
