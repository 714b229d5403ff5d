"""Sigma-protocol proofs over chunked Pedersen commitments (Fiat-Shamir, non-interactive).

* :func:`prove_opening` / :func:`verify_opening`: knowledge of an opening ``(v, b)`` of every
  chunk of a :class:`VectorCommitment`. Chunks are batched with coefficients ``rho_0 = 1,
  rho_j`` (128-bit, from the transcript after all chunks are absorbed) into
  ``C* = sum rho_j C_j``, and a Schnorr-style proof of knowledge of ``C*``'s opening is given
  (``A = <a, G> + s H``, ``z = a + e v*``, ``z_r = s + e b*``). The proof has ``chunk_size``
  response scalars whatever the number of chunks.
* :func:`prove_binding` / :func:`verify_binding`: for a verifier that holds the values (it
  quantises the checkpoint the proof's chain hashes), ``C_j - <v_j, G>`` is a known multiple
  of H for every chunk (Schnorr on H of the batched difference). Because nobody knows
  log_H(G_i), this shows the commitment opens to exactly those values: it ties a commitment
  to the weights without revealing the blindings.
* :func:`open_chunk` / :func:`verify_chunk_opening`: reveal one chunk's values and blinding
  with its Merkle path; the verifier recomputes the commitment and checks the path to the root.

Every transcript absorbs the protocol name, the run id, checkpoint index, generator-set id,
an optional verifier challenge (or the chain's state digest) and every commitment the
statement is about, so a proof does not transfer to another statement. Verifiers raise :class:`ProofRejected` on failure.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zk.backend import CURVE_ORDER as R
from zk.errors import PointDecodeError, ProofRejected, ZkFormatError
from zk.merkle import merkle_path, verify_path
from zk.pedersen import Committer, VectorCommitment
from zk.transcript import Transcript

_OPENING_MAGIC = b"PZKOPN01"


@dataclass(frozen=True)
class Context:
    """What a proof is bound to: the run (plan digest), the checkpoint index and, for binding
    proofs, the digest the proof's chain records for that checkpoint (empty when none)."""

    run_id: bytes
    checkpoint: int
    state_digest: bytes = b""

    def __post_init__(self) -> None:
        if len(self.run_id) != 32:
            raise ValueError("run_id must be the 32-byte plan digest")
        if self.checkpoint < 0:
            raise ValueError("checkpoint index must be non-negative")
        if len(self.state_digest) not in (0, 32):
            raise ValueError("state_digest must be empty or 32 bytes")


def _scalar_bytes(v: int) -> bytes:
    return (v % R).to_bytes(32, "big")


def _read_scalar(b: bytes) -> int:
    v = int.from_bytes(b, "big")
    if v >= R:
        raise ZkFormatError("non-canonical scalar (>= r)")
    return v


@dataclass(frozen=True)
class OpeningProof:
    a: bytes  # compressed A
    z: tuple[int, ...]
    z_r: int

    def to_bytes(self) -> bytes:
        return (
            _OPENING_MAGIC
            + struct.pack(">I", len(self.z))
            + self.a
            + _scalar_bytes(self.z_r)
            + b"".join(_scalar_bytes(v) for v in self.z)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> OpeningProof:
        if len(data) < 12 + 48 + 32 or data[:8] != _OPENING_MAGIC:
            raise ZkFormatError("not an opening proof (bad magic or too short)")
        (m,) = struct.unpack_from(">I", data, 8)
        if m == 0 or len(data) != 12 + 48 + 32 + 32 * m:
            raise ZkFormatError("opening proof has the wrong length")
        a = bytes(data[12:60])
        z_r = _read_scalar(data[60:92])
        z = tuple(_read_scalar(data[92 + 32 * i : 124 + 32 * i]) for i in range(m))
        return cls(a, z, z_r)


@dataclass(frozen=True)
class BindingProof:
    """Schnorr proof on H that a commitment opens to the verifier's values (``T || z``, 80 bytes)."""

    t: bytes  # compressed T = k H
    z: int

    SIZE = 48 + 32

    def to_bytes(self) -> bytes:
        return self.t + _scalar_bytes(self.z)

    @classmethod
    def from_bytes(cls, data: bytes) -> BindingProof:
        if len(data) != cls.SIZE:
            raise ZkFormatError(f"a binding proof is {cls.SIZE} bytes, got {len(data)}")
        return cls(bytes(data[:48]), _read_scalar(data[48:]))


@dataclass(frozen=True)
class ChunkOpening:
    """One revealed chunk: its values, blinding, commitment and Merkle path."""

    index: int
    values: tuple[int, ...]
    blinding: int
    commitment: bytes
    path: tuple[bytes, ...]


# --------------------------------------------------------------------------- helpers


def _decode_all(committer: Committer, encs: Sequence[bytes]) -> list[object]:
    be = committer.backend
    try:
        return [be.decode(e) for e in encs]
    except PointDecodeError as exc:
        raise ProofRejected(f"a commitment or proof point is invalid: {exc}") from None


def _check_commitment(committer: Committer, com: VectorCommitment) -> None:
    if com.genset_id != committer.params.genset_id:
        raise ProofRejected("commitment was made under a different generator set")
    if len(com.chunks) != committer.n_chunks(com.length):
        raise ProofRejected(f"commitment has {len(com.chunks)} chunks for {com.length} values")


def _rhos(tr: Transcript, n: int) -> list[int]:
    return [1] + [tr.challenge_int(b"rho", 128) for _ in range(n - 1)]


def _weighted_rows(rows: np.ndarray, rhos: Sequence[int]) -> list[int]:
    """``sum_j rho_j * rows[j]`` mod r, per column (exact, via 16-bit limbs of rho in int64)."""
    n, m = rows.shape
    max_abs = int(np.abs(rows).max()) if rows.size else 0
    if n * max(max_abs, 1) < 1 << 46:
        limbs = np.array([[(r >> (16 * k)) & 0xFFFF for k in range(8)] for r in rhos], dtype=np.int64)
        part = (rows.T @ limbs).tolist()  # (m, 8), each |entry| < 2^62
        return [sum(v << (16 * k) for k, v in enumerate(row)) % R for row in part]
    cols = rows.T.tolist()
    return [sum(r * v for r, v in zip(rhos, col)) % R for col in cols]


def _opening_transcript(committer: Committer, ctx: Context, com: VectorCommitment, challenge: bytes) -> Transcript:
    tr = Transcript(b"opening-knowledge")
    tr.append(b"run_id", ctx.run_id)
    tr.append_u64(b"checkpoint", ctx.checkpoint)
    tr.append(b"genset", committer.params.genset_id)
    tr.append(b"verifier_challenge", challenge)
    tr.append_u64(b"length", com.length)
    tr.append_u64(b"chunks", len(com.chunks))
    for c in com.chunks:
        tr.append(b"C", c)
    return tr


def _width(committer: Committer, com: VectorCommitment) -> int:
    return min(committer.params.chunk_size, max(com.length, 1))


# --------------------------------------------------------------------------- knowledge of opening


def prove_opening(
    committer: Committer,
    ctx: Context,
    com: VectorCommitment,
    values: np.ndarray,
    blindings: Sequence[int],
    *,
    challenge: bytes = b"",
) -> OpeningProof:
    """Prove knowledge of ``(values, blindings)`` opening every chunk of ``com``."""
    rows = committer.as_rows(values)
    if len(rows) != len(com.chunks) or len(blindings) != len(com.chunks):
        raise ValueError("values/blindings do not match the commitment's chunk count")
    be, gens = committer.backend, committer.generators
    width = _width(committer, com)
    tr = _opening_transcript(committer, ctx, com, challenge)
    rhos = _rhos(tr, len(com.chunks))
    w_star = _weighted_rows(rows[:, :width], rhos)
    b_star = sum(r * b for r, b in zip(rhos, blindings)) % R
    a = [secrets.randbelow(R) for _ in range(width)]
    s = secrets.randbelow(R)
    a_enc = be.encode(be.msm([*gens.g[:width], gens.h], [*a, s]))
    tr.append(b"A", a_enc)
    e = tr.challenge_scalar(b"e")
    z = tuple((ai + e * wi) % R for ai, wi in zip(a, w_star))
    return OpeningProof(a_enc, z, (s + e * b_star) % R)


def verify_opening(
    committer: Committer,
    ctx: Context,
    com: VectorCommitment,
    proof: OpeningProof,
    *,
    challenge: bytes = b"",
) -> None:
    """Raise :class:`ProofRejected` unless ``proof`` shows knowledge of ``com``'s opening."""
    _check_commitment(committer, com)
    width = _width(committer, com)
    if len(proof.z) != width:
        raise ProofRejected(f"proof has {len(proof.z)} responses, expected {width}")
    be, gens = committer.backend, committer.generators
    pts = _decode_all(committer, com.chunks)
    tr = _opening_transcript(committer, ctx, com, challenge)
    rhos = _rhos(tr, len(com.chunks))
    tr.append(b"A", proof.a)
    e = tr.challenge_scalar(b"e")
    # <z, G> + z_r H - e * sum(rho_j C_j) == A, compared as canonical encodings
    total = be.msm(
        [*gens.g[:width], gens.h, *pts],
        [*proof.z, proof.z_r, *[(-e * r) % R for r in rhos]],
    )
    if be.encode(total) != proof.a:
        raise ProofRejected("proof of knowledge of the opening does not verify")


# --------------------------------------------------------------------------- binding to known weights


def _binding_transcript(committer: Committer, ctx: Context, com: VectorCommitment) -> Transcript:
    p = committer.params
    tr = Transcript(b"binding")
    tr.append(b"run_id", ctx.run_id)
    tr.append_u64(b"checkpoint", ctx.checkpoint)
    tr.append(b"state_digest", ctx.state_digest)
    tr.append(b"genset", p.genset_id)
    tr.append_u64(b"scale_bits", p.scale_bits)
    tr.append_u64(b"bits", p.bits)
    tr.append_u64(b"length", com.length)
    tr.append_u64(b"chunks", len(com.chunks))
    for c in com.chunks:
        tr.append(b"C", c)
    return tr


def prove_binding(committer: Committer, ctx: Context, com: VectorCommitment, blindings: Sequence[int]) -> BindingProof:
    """Prove that ``com`` commits to the values it was made from, for a verifier who holds them.

    The statement is ``C_j - <v_j, G> = b_j H`` for every chunk, where ``v`` is the vector the
    verifier quantises itself. Batched with transcript coefficients ``rho_j``: the prover shows
    it knows ``beta = sum rho_j b_j`` with ``sum rho_j (C_j - <v_j, G>) = beta H`` (Schnorr on H).
    The prover needs only the blindings; the values enter on the verifier's side.
    """
    if len(blindings) != len(com.chunks):
        raise ValueError("need one blinding per chunk")
    be, gens = committer.backend, committer.generators
    tr = _binding_transcript(committer, ctx, com)
    rhos = _rhos(tr, len(com.chunks))
    beta = sum(r * b for r, b in zip(rhos, blindings)) % R
    k = secrets.randbelow(R - 1) + 1
    t_enc = be.encode(be.mul(gens.h, k))
    tr.append(b"T", t_enc)
    e = tr.challenge_scalar(b"e")
    return BindingProof(t_enc, (k + e * beta) % R)


def verify_binding(
    committer: Committer, ctx: Context, com: VectorCommitment, values: np.ndarray, proof: BindingProof
) -> None:
    """Raise :class:`ProofRejected` unless ``com`` commits to exactly ``values`` (the verifier's own).

    One multi-scalar multiplication of ``min(chunk_size, length) + chunks + 1`` points:
    ``z H - e (sum rho_j C_j - <sum rho_j v_j, G>) == T``. A commitment to any other vector
    passes with probability about 2^-128 (the batching coefficients) unless its maker knows a
    discrete-log relation between the generators.
    """
    _check_commitment(committer, com)
    rows = committer.as_rows(values)
    if len(np.asarray(values)) != com.length or len(rows) != len(com.chunks):
        raise ProofRejected(f"the commitment is to {com.length} values; the verifier holds {len(np.asarray(values))}")
    be, gens = committer.backend, committer.generators
    width = _width(committer, com)
    pts = _decode_all(committer, com.chunks)
    tr = _binding_transcript(committer, ctx, com)
    rhos = _rhos(tr, len(com.chunks))
    tr.append(b"T", proof.t)
    e = tr.challenge_scalar(b"e")
    w = _weighted_rows(rows[:, :width], rhos)
    total = be.msm(
        [gens.h, *pts, *gens.g[:width]],
        [proof.z, *[(-e * r) % R for r in rhos], *[(e * wi) % R for wi in w]],
    )
    if be.encode(total) != proof.t:
        raise ProofRejected("the commitment does not open to these values")


# --------------------------------------------------------------------------- chunk openings


def open_chunk(
    committer: Committer, com: VectorCommitment, values: np.ndarray, blindings: Sequence[int], index: int
) -> ChunkOpening:
    """Reveal chunk ``index`` (values, blinding) with its Merkle path."""
    rows = committer.as_rows(values)
    m = committer.params.chunk_size
    if not 0 <= index < len(com.chunks):
        raise IndexError(f"chunk {index} out of range 0..{len(com.chunks) - 1}")
    n_vals = min(m, com.length - index * m)
    return ChunkOpening(
        index,
        tuple(int(v) for v in rows[index, :n_vals]),
        int(blindings[index]) % R,
        com.chunks[index],
        tuple(merkle_path(com.chunks, index)),
    )


def verify_chunk_opening(committer: Committer, root: bytes, n_chunks: int, opening: ChunkOpening) -> np.ndarray:
    """Check a revealed chunk against the Merkle root; return its integer values.

    Raises :class:`ProofRejected` if the values and blinding do not recompute the commitment,
    or the commitment is not leaf ``opening.index`` under ``root``, or a value lies outside
    the quantiser's range ``[-2^(bits-1), 2^(bits-1) - 1]``.
    """
    if len(opening.values) > committer.params.chunk_size:
        raise ProofRejected("opened chunk is longer than the chunk size")
    q = committer.params.quantizer
    if any(not q.lo <= v <= q.hi for v in opening.values):
        raise ProofRejected(f"an opened value is outside the quantiser's range {q.lo}..{q.hi}")
    if not verify_path(root, n_chunks, opening.index, opening.commitment, opening.path):
        raise ProofRejected(f"chunk {opening.index}'s commitment is not under the Merkle root")
    _decode_all(committer, [opening.commitment])
    vals = np.asarray(opening.values, dtype=np.int64)
    if committer.commit_chunk(vals, opening.blinding) != opening.commitment:
        raise ProofRejected(f"chunk {opening.index}'s values and blinding do not match its commitment")
    return vals


__all__ = [
    "Context",
    "OpeningProof",
    "BindingProof",
    "ChunkOpening",
    "prove_opening",
    "verify_opening",
    "prove_binding",
    "verify_binding",
    "open_chunk",
    "verify_chunk_opening",
]
