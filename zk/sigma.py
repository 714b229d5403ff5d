"""Sigma-protocol proofs over chunked Pedersen commitments (Fiat-Shamir, non-interactive).

* :func:`prove_opening` / :func:`verify_opening`: knowledge of an opening ``(v, b)`` of every
  chunk of a :class:`VectorCommitment`. Chunks are batched with coefficients ``rho_0 = 1,
  rho_j`` (128-bit, from the transcript after all chunks are absorbed) into
  ``C* = sum rho_j C_j``, and a Schnorr-style proof of knowledge of ``C*``'s opening is given
  (``A = <a, G> + s H``, ``z = a + e v*``, ``z_r = s + e b*``). The proof has ``chunk_size``
  response scalars whatever the number of chunks.
* :func:`prove_linear` / :func:`verify_linear`: ``C(W_new) = C(W_old) + C(Δ)`` chunk by chunk,
  i.e. the difference ``D_j = C_new,j - C_old,j - C_Δ,j`` is a known multiple of H (Schnorr
  on H of the batched ``D``). Because nobody knows log_H(G_i), this proves the committed
  integers satisfy ``v_new = v_old + Δ`` exactly.
* :func:`open_chunk` / :func:`verify_chunk_opening`: reveal one chunk's values and blinding
  with its Merkle path; the verifier recomputes the commitment and checks the path to the root.

Every transcript absorbs the protocol name, the run id, checkpoint index(es), generator-set id,
an optional verifier challenge and every commitment the statement is about, so a proof does
not transfer to another statement. Verifiers raise :class:`ProofRejected` on failure.
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
_LINEAR_LEN = 48 + 32


@dataclass(frozen=True)
class Context:
    """What a proof is bound to: the run (plan digest) and the checkpoint index."""

    run_id: bytes
    checkpoint: int

    def __post_init__(self) -> None:
        if len(self.run_id) != 32:
            raise ValueError("run_id must be the 32-byte plan digest")
        if self.checkpoint < 0:
            raise ValueError("checkpoint index must be non-negative")


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
class LinearProof:
    t: bytes  # compressed T = k H
    z: int

    def to_bytes(self) -> bytes:
        return self.t + _scalar_bytes(self.z)

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearProof:
        if len(data) != _LINEAR_LEN:
            raise ZkFormatError(f"a linear-relation proof is {_LINEAR_LEN} bytes, got {len(data)}")
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


# --------------------------------------------------------------------------- linear relation


def _linear_transcript(
    committer: Committer, run_id: bytes, frm: int, to: int, coms: Sequence[VectorCommitment]
) -> Transcript:
    tr = Transcript(b"linear-relation")
    tr.append(b"run_id", run_id)
    tr.append_u64(b"from_checkpoint", frm)
    tr.append_u64(b"to_checkpoint", to)
    tr.append(b"genset", committer.params.genset_id)
    for label, com in zip((b"old", b"new", b"delta"), coms):
        tr.append_u64(label + b".length", com.length)
        for c in com.chunks:
            tr.append(label, c)
    return tr


def _same_shape(old: VectorCommitment, new: VectorCommitment, delta: VectorCommitment) -> None:
    if not (len(old.chunks) == len(new.chunks) == len(delta.chunks) and old.length == new.length == delta.length):
        raise ProofRejected("commitments in a linear relation must have the same length and chunking")


def prove_linear(
    committer: Committer,
    run_id: bytes,
    from_checkpoint: int,
    to_checkpoint: int,
    old: tuple[VectorCommitment, Sequence[int]],
    new: tuple[VectorCommitment, Sequence[int]],
    delta: tuple[VectorCommitment, Sequence[int]],
) -> LinearProof:
    """Prove ``new = old + delta`` for committed vectors; each argument is (commitment, blindings)."""
    _same_shape(old[0], new[0], delta[0])
    be, gens = committer.backend, committer.generators
    tr = _linear_transcript(committer, run_id, from_checkpoint, to_checkpoint, (old[0], new[0], delta[0]))
    rhos = _rhos(tr, len(old[0].chunks))
    d = sum(r * (bn - bo - bd) for r, bo, bn, bd in zip(rhos, old[1], new[1], delta[1], strict=True)) % R
    k = secrets.randbelow(R - 1) + 1
    t_enc = be.encode(be.mul(gens.h, k))
    tr.append(b"T", t_enc)
    e = tr.challenge_scalar(b"e")
    return LinearProof(t_enc, (k + e * d) % R)


def verify_linear(
    committer: Committer,
    run_id: bytes,
    from_checkpoint: int,
    to_checkpoint: int,
    old: VectorCommitment,
    new: VectorCommitment,
    delta: VectorCommitment,
    proof: LinearProof,
) -> None:
    """Raise :class:`ProofRejected` unless ``new = old + delta`` is proven."""
    for com in (old, new, delta):
        _check_commitment(committer, com)
    _same_shape(old, new, delta)
    be, gens = committer.backend, committer.generators
    n = len(old.chunks)
    pts = _decode_all(committer, [*old.chunks, *new.chunks, *delta.chunks])
    olds, news, deltas = pts[:n], pts[n : 2 * n], pts[2 * n :]
    tr = _linear_transcript(committer, run_id, from_checkpoint, to_checkpoint, (old, new, delta))
    rhos = _rhos(tr, n)
    tr.append(b"T", proof.t)
    e = tr.challenge_scalar(b"e")
    if n == 1:
        d_pt = be.add(news[0], be.neg(be.add(olds[0], deltas[0])))
    else:
        d_pt = be.msm([*news, *olds, *deltas], [*rhos, *[R - r for r in rhos], *[R - r for r in rhos]])
    # z H - e D == T, compared as canonical encodings (T needs no separate decoding)
    if be.encode(be.msm([gens.h, d_pt], [proof.z, R - e])) != proof.t:
        raise ProofRejected("linear relation proof does not verify")


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


def verify_chunk_opening(
    committer: Committer, root: bytes, n_chunks: int, opening: ChunkOpening, *, max_abs: int | None = None
) -> np.ndarray:
    """Check a revealed chunk against the Merkle root; return its integer values.

    Raises :class:`ProofRejected` if the values and blinding do not recompute the commitment,
    or the commitment is not leaf ``opening.index`` under ``root``, or a value exceeds
    ``max_abs`` (default: the quantiser's range; pass ``2**bits`` for deltas).
    """
    if len(opening.values) > committer.params.chunk_size:
        raise ProofRejected("opened chunk is longer than the chunk size")
    q = committer.params.quantizer
    bound = -q.lo if max_abs is None else max_abs
    if any(abs(v) > bound for v in opening.values):
        raise ProofRejected(f"an opened value is outside the committed range (|v| <= {bound})")
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
    "LinearProof",
    "ChunkOpening",
    "prove_opening",
    "verify_opening",
    "prove_linear",
    "verify_linear",
    "open_chunk",
    "verify_chunk_opening",
]
