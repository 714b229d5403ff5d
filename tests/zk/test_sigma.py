"""Sigma protocols: each proof verifies when honest and fails on every listed forgery."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from zk_testutil import SMALL, non_subgroup_point, off_curve_x

from zk import (
    BindingProof,
    Committer,
    Context,
    OpeningProof,
    ProofRejected,
    ZkFormatError,
    open_chunk,
    prove_binding,
    prove_opening,
    verify_binding,
    verify_chunk_opening,
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
        BindingProof.from_bytes(b"\x00" * 79)


BOUND = Context(RUN, 3, b"\x11" * 32)  # run, checkpoint, and the chain's state digest


@pytest.fixture(scope="module")
def bound(committer: Committer, vec: np.ndarray):
    com, blind = committer.commit_values(vec)
    return com, blind, prove_binding(committer, BOUND, com, blind)


def test_binding_proof_verifies_against_the_committed_values(committer: Committer, bound, vec: np.ndarray) -> None:
    com, _, proof = bound
    verify_binding(committer, BOUND, com, vec, proof)
    assert BindingProof.from_bytes(proof.to_bytes()) == proof


def test_binding_fails_for_any_other_values(committer: Committer, bound, vec: np.ndarray) -> None:
    com, _, proof = bound
    for i in (0, SMALL, N - 1):  # one value changed, in each chunk
        other = vec.copy()
        other[i] += 1
        with pytest.raises(ProofRejected, match="does not open"):
            verify_binding(committer, BOUND, com, other, proof)
    with pytest.raises(ProofRejected):
        verify_binding(committer, BOUND, com, vec[:-1], proof)


def test_binding_of_a_commitment_to_other_weights_fails(committer: Committer, vec: np.ndarray) -> None:
    # The forger commits to zeros (or anything) and proves honestly about its own commitment:
    # the verifier, holding the real values, rejects it.
    for forged in (np.zeros_like(vec), vec[::-1].copy(), vec + 1):
        com, blind = committer.commit_values(forged)
        proof = prove_binding(committer, BOUND, com, blind)
        verify_binding(committer, BOUND, com, forged, proof)  # about the forged values, it is true
        with pytest.raises(ProofRejected):
            verify_binding(committer, BOUND, com, vec, proof)


def test_binding_with_wrong_blindings_fails(committer: Committer, bound, vec: np.ndarray) -> None:
    com, blind, _ = bound
    proof = prove_binding(committer, BOUND, com, [blind[0], blind[1] + 1, blind[2]])
    with pytest.raises(ProofRejected):
        verify_binding(committer, BOUND, com, vec, proof)


@pytest.mark.parametrize("ctx", [Context(b"\x43" * 32, 3, b"\x11" * 32), Context(RUN, 4, b"\x11" * 32),
                                 Context(RUN, 3, b"\x12" * 32), Context(RUN, 3)])
def test_binding_proof_does_not_transfer(committer: Committer, bound, vec: np.ndarray, ctx: Context) -> None:
    com, _, proof = bound
    with pytest.raises(ProofRejected):
        verify_binding(committer, ctx, com, vec, proof)


def test_tampered_binding_proof_fails(committer: Committer, bound, vec: np.ndarray) -> None:
    com, _, proof = bound
    be = committer.backend
    for bad in (dataclasses.replace(proof, z=(proof.z + 1) % R),
                dataclasses.replace(proof, t=be.encode(be.mul(committer.generators.h, 7)))):
        with pytest.raises(ProofRejected):
            verify_binding(committer, BOUND, com, vec, bad)


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
