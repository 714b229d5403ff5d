"""Sigma protocols: each proof verifies when honest and fails on every listed forgery."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from zk_testutil import SMALL, non_subgroup_point, off_curve_x

from zk import (
    Committer,
    Context,
    LinearProof,
    OpeningProof,
    ProofRejected,
    ZkFormatError,
    open_chunk,
    prove_linear,
    prove_opening,
    verify_chunk_opening,
    verify_linear,
    verify_opening,
)
from zk.backend import CURVE_ORDER as R

RUN = b"\x42" * 32
CTX = Context(RUN, 3)
N = 2 * SMALL + 10  # three chunks, the last one partial


@pytest.fixture(scope="module")
def vec() -> np.ndarray:
    return np.random.default_rng(5).integers(-(2**15), 2**15, N)


@pytest.fixture(scope="module")
def committed(committer: Committer, vec: np.ndarray):
    com, blind = committer.commit_values(vec)
    proof = prove_opening(committer, CTX, com, vec, blind, challenge=b"nonce")
    return com, blind, proof


def test_blindings_are_fresh_and_hide(committer: Committer, vec: np.ndarray) -> None:
    a, ba = committer.commit_values(vec)
    b, bb = committer.commit_values(vec)
    assert ba != bb and a.chunks != b.chunks  # same weights, unlinkable commitments
    c, _ = committer.commit_values(vec, ba)
    assert c == a  # deterministic given the blindings


def test_opening_proof_verifies_and_round_trips(committer: Committer, committed) -> None:
    com, _, proof = committed
    verify_opening(committer, CTX, com, proof, challenge=b"nonce")
    again = OpeningProof.from_bytes(proof.to_bytes())
    assert again == proof
    verify_opening(committer, CTX, com, again, challenge=b"nonce")


def test_opening_proof_with_wrong_weights_fails(committer: Committer, committed, vec: np.ndarray) -> None:
    com, blind, _ = committed
    bad = vec.copy()
    bad[7] += 1
    proof = prove_opening(committer, CTX, com, bad, blind, challenge=b"nonce")
    with pytest.raises(ProofRejected):
        verify_opening(committer, CTX, com, proof, challenge=b"nonce")


def test_opening_proof_with_wrong_blinding_fails(committer: Committer, committed, vec: np.ndarray) -> None:
    com, blind, _ = committed
    proof = prove_opening(committer, CTX, com, vec, [blind[0], blind[1] + 1, blind[2]], challenge=b"nonce")
    with pytest.raises(ProofRejected):
        verify_opening(committer, CTX, com, proof, challenge=b"nonce")


@pytest.mark.parametrize(
    "ctx, challenge",
    [
        (Context(b"\x43" * 32, 3), b"nonce"),  # another run
        (Context(RUN, 4), b"nonce"),  # another checkpoint
        (CTX, b"other nonce"),  # replayed against a fresh challenge
    ],
)
def test_opening_proof_does_not_transfer(committer: Committer, committed, ctx: Context, challenge: bytes) -> None:
    com, _, proof = committed
    with pytest.raises(ProofRejected):
        verify_opening(committer, ctx, com, proof, challenge=challenge)


def test_opening_proof_moved_to_another_commitment_fails(committer: Committer, committed, vec: np.ndarray) -> None:
    _, _, proof = committed
    other, _ = committer.commit_values(vec)  # same weights, other blindings
    with pytest.raises(ProofRejected):
        verify_opening(committer, CTX, other, proof, challenge=b"nonce")


def test_tampered_opening_proof_fails(committer: Committer, committed) -> None:
    com, _, proof = committed
    be = committer.backend
    other_a = be.encode(be.mul(committer.generators.h, 5))
    tampered = [
        dataclasses.replace(proof, a=other_a),
        dataclasses.replace(proof, z_r=(proof.z_r + 1) % R),
        dataclasses.replace(proof, z=(proof.z[0] + 1, *proof.z[1:])),
        dataclasses.replace(proof, z=proof.z[:-1]),
    ]
    for t in tampered:
        with pytest.raises(ProofRejected):
            verify_opening(committer, CTX, com, t, challenge=b"nonce")


def test_invalid_points_in_proof_or_commitment_fail(committer: Committer, committed) -> None:
    com, _, proof = committed
    for bad in (off_curve_x(), non_subgroup_point()[0]):
        with pytest.raises(ProofRejected):  # A is compared as bytes: an invalid point never matches
            verify_opening(committer, CTX, com, dataclasses.replace(proof, a=bad), challenge=b"nonce")
        bad_com = dataclasses.replace(com, chunks=(bad, *com.chunks[1:]))
        with pytest.raises(ProofRejected, match="invalid"):
            verify_opening(committer, CTX, bad_com, proof, challenge=b"nonce")


def test_malformed_proof_bytes_are_format_errors(committed) -> None:
    _, _, proof = committed
    raw = proof.to_bytes()
    for bad in (b"", raw[:-1], b"XXXXXXXX" + raw[8:], raw[:12] + raw[12:60] + (R).to_bytes(32, "big") + raw[92:]):
        with pytest.raises(ZkFormatError):
            OpeningProof.from_bytes(bad)
    with pytest.raises(ZkFormatError):
        LinearProof.from_bytes(b"\x00" * 79)


@pytest.fixture(scope="module")
def linear(committer: Committer, vec: np.ndarray):
    delta = np.random.default_rng(6).integers(-500, 500, N)
    old = committer.commit_values(vec)
    new = committer.commit_values(vec + delta)
    dc = committer.commit_values(delta)
    proof = prove_linear(committer, RUN, 0, 1, old, new, dc)
    return old, new, dc, delta, proof


def test_linear_relation_verifies(committer: Committer, linear) -> None:
    old, new, dc, _, proof = linear
    verify_linear(committer, RUN, 0, 1, old[0], new[0], dc[0], proof)
    assert LinearProof.from_bytes(proof.to_bytes()) == proof


def test_linear_relation_with_wrong_delta_fails(committer: Committer, linear, vec: np.ndarray) -> None:
    old, new, _, delta, _ = linear
    bad = delta.copy()
    bad[0] += 1
    dc_bad = committer.commit_values(bad)
    proof = prove_linear(committer, RUN, 0, 1, old, new, dc_bad)
    with pytest.raises(ProofRejected):
        verify_linear(committer, RUN, 0, 1, old[0], new[0], dc_bad[0], proof)


def test_linear_relation_with_wrong_blinding_fails(committer: Committer, linear) -> None:
    old, new, dc, _, _ = linear
    proof = prove_linear(committer, RUN, 0, 1, old, new, (dc[0], [b + 1 for b in dc[1]]))
    with pytest.raises(ProofRejected):
        verify_linear(committer, RUN, 0, 1, old[0], new[0], dc[0], proof)


def test_linear_proof_does_not_transfer(committer: Committer, linear) -> None:
    old, new, dc, _, proof = linear
    with pytest.raises(ProofRejected):
        verify_linear(committer, b"\x00" * 32, 0, 1, old[0], new[0], dc[0], proof)  # other run
    with pytest.raises(ProofRejected):
        verify_linear(committer, RUN, 1, 2, old[0], new[0], dc[0], proof)  # other checkpoints
    with pytest.raises(ProofRejected):
        verify_linear(committer, RUN, 0, 1, new[0], old[0], dc[0], proof)  # swapped
    with pytest.raises(ProofRejected):
        verify_linear(committer, RUN, 0, 1, old[0], new[0], dc[0], LinearProof(proof.t, (proof.z + 1) % R))


def test_chunk_opening_verifies_and_detects_tampering(committer: Committer, committed, vec: np.ndarray) -> None:
    com, blind, _ = committed
    last = open_chunk(committer, com, vec, blind, 2)
    assert len(last.values) == N - 2 * SMALL
    got = verify_chunk_opening(committer, com.root, len(com.chunks), last)
    assert got.tolist() == vec[2 * SMALL :].tolist()
    op = open_chunk(committer, com, vec, blind, 1)
    verify_chunk_opening(committer, com.root, len(com.chunks), op)
    forged = [
        dataclasses.replace(op, values=(op.values[0] + 1, *op.values[1:])),
        dataclasses.replace(op, blinding=op.blinding + 1),
        dataclasses.replace(op, index=0),
        dataclasses.replace(op, path=op.path[:-1]),
        dataclasses.replace(op, values=(op.values[0] + R, *op.values[1:])),  # same point, out of range
    ]
    for f in forged:
        with pytest.raises(ProofRejected):
            verify_chunk_opening(committer, com.root, len(com.chunks), f)
    other, _ = committer.commit_values(vec)
    with pytest.raises(ProofRejected):
        verify_chunk_opening(committer, other.root, len(other.chunks), op)
