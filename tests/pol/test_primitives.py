"""Canonical digests, Merkle trees, keys, sampler, schedules and codec."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pol import codec
from pol.errors import KeyFileError, PlanError, ProofFormatError
from pol.hashing import state_digest, weights_digest
from pol.keys import fingerprint, generate_keypair, load_signing_key, load_verify_key, resolve_trusted_key
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


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.float16]),
                  hnp.array_shapes(min_dims=0, max_dims=3, max_side=7)), st.booleans())
def test_codec_round_trip_is_bitwise(array: np.ndarray, use_base: bool) -> None:
    base = np.roll(array, 1) if use_base and array.ndim else None
    blob = codec.encode_tensor(array, base)
    out = codec.decode_tensor(blob, array.dtype, array.shape, base)
    assert out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()  # bitwise, NaN payloads included


def test_codec_rejects_corrupt_or_wrong_size_blob() -> None:
    blob = codec.encode_tensor(np.arange(10, dtype=np.float32), None)
    with pytest.raises(ProofFormatError):
        codec.decode_tensor(blob[:-3], np.dtype(np.float32), (10,), None)
    with pytest.raises(ProofFormatError):
        codec.decode_tensor(blob, np.dtype(np.float32), (11,), None)
