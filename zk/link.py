"""Linking zk to the proof file: commit its checkpoints, prove ownership, open, verify.

``build_section`` reads the stored checkpoints through :class:`pol.proof_file.ProofReader`,
commits the ``model/`` float tensors of each, adds delta commitments with linear-relation
proofs between consecutive checkpoints, and signs the section (see :mod:`zk.section` for the
layout). ``verify_zk_section`` is what ``pol verify`` and ``pol zk verify`` call.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zk.backend import CURVE_ORDER, Backend, get_backend
from zk.errors import ProofRejected, ZkFormatError
from zk.pedersen import Committer, Params, VectorCommitment
from zk.quantize import Layout
from zk.section import (
    SCHEMA_VERSION,
    SIGN_DOMAIN,
    ZkSecrets,
    ZkSection,
    read_secrets,
    read_section,
    write_secrets,
    write_section,
)
from zk.sigma import (
    ChunkOpening,
    Context,
    LinearProof,
    OpeningProof,
    prove_linear,
    prove_opening,
    verify_chunk_opening,
    verify_linear,
    verify_opening,
)

OWNERSHIP_MAGIC = b"POLZKOWN"


# --------------------------------------------------------------------------- proof file access


def _open_reader(path: str | os.PathLike[str]) -> Any:
    """The lead's ProofReader (a seam for tests)."""
    from pol.proof_file import ProofReader

    return ProofReader(path)


def _model_tensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in state.items() if k.startswith("model/") and np.asarray(v).dtype.kind == "f"}


def _committed_indices(reader: Any) -> list[int]:
    stored = getattr(reader, "stored_checkpoints", None)
    return sorted(int(i) for i in stored) if stored is not None else list(range(int(reader.num_checkpoints)))


def build_section(
    reader: Any,
    signing_key: Any,
    *,
    params: Params | None = None,
    backend: Backend | None = None,
    deltas: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[ZkSection, ZkSecrets]:
    """Commit the ``model/`` float tensors of every stored checkpoint and sign the section."""
    from pol.keys import sign

    params = params or Params()
    committer = Committer(params, backend or get_backend(), cache_dir)
    if bytes(signing_key.verify_key) != bytes(reader.signer_public_key):
        raise ZkFormatError("the signing key does not match the proof's signer key")
    run_id = bytes(reader.plan_digest)
    indices = _committed_indices(reader)
    if not indices:
        raise ZkFormatError("the proof holds no stored checkpoints to commit")
    layout: Layout | None = None
    coms: list[VectorCommitment] = []
    blinds: list[list[int]] = []
    clipped: list[int] = []
    dcoms: list[VectorCommitment] = []
    dblinds: list[list[int]] = []
    proofs: list[LinearProof] = []
    prev: tuple[int, VectorCommitment, list[int], np.ndarray] | None = None
    for i in indices:
        tensors = _model_tensors(reader.checkpoint_state(i))
        if not tensors:
            raise ZkFormatError(f"checkpoint {i} has no model/ float tensors to commit")
        lay, com, bl, vec, clip = committer.commit_tensors(tensors)
        if layout is None:
            layout = lay
        elif lay != layout:
            raise ZkFormatError(f"checkpoint {i} has a different set or shape of model tensors")
        coms.append(com)
        blinds.append(bl)
        clipped.append(clip)
        if deltas and prev is not None:
            j, pcom, pbl, pvec = prev
            dcom, dbl = committer.commit_values(vec - pvec)
            proofs.append(prove_linear(committer, run_id, j, i, (pcom, pbl), (com, bl), (dcom, dbl)))
            dcoms.append(dcom)
            dblinds.append(dbl)
        prev = (i, com, bl, vec)
    assert layout is not None
    section = ZkSection(
        params, run_id, layout, indices, clipped, coms, dcoms, proofs, signer=bytes(signing_key.verify_key)
    )
    section.signature = sign(signing_key, SIGN_DOMAIN, section.digest())
    secrets_ = ZkSecrets(run_id, params.genset_id, indices, blinds, dblinds)
    return section, secrets_


# --------------------------------------------------------------------------- ownership proof


@dataclass(frozen=True)
class OwnershipProof:
    """Knowledge of the opening of one checkpoint's commitment, bound to a verifier challenge."""

    run_id: bytes
    checkpoint: int
    challenge: bytes
    genset_id: bytes
    proof: OpeningProof

    def to_bytes(self) -> bytes:
        return (
            OWNERSHIP_MAGIC
            + struct.pack(">H", SCHEMA_VERSION)
            + self.run_id
            + struct.pack(">Q", self.checkpoint)
            + self.genset_id
            + struct.pack(">H", len(self.challenge))
            + self.challenge
            + self.proof.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> OwnershipProof:
        head = 8 + 2 + 32 + 8 + 32 + 2
        if len(data) < head or data[:8] != OWNERSHIP_MAGIC:
            raise ZkFormatError("not a pol zk ownership proof (bad magic or too short)")
        (version,) = struct.unpack_from(">H", data, 8)
        if version != SCHEMA_VERSION:
            raise ZkFormatError(f"ownership proof version {version} is not supported")
        run_id = bytes(data[10:42])
        (ckpt,) = struct.unpack_from(">Q", data, 42)
        gid = bytes(data[50:82])
        (clen,) = struct.unpack_from(">H", data, 82)
        if len(data) < head + clen:
            raise ZkFormatError("ownership proof is truncated")
        challenge = bytes(data[head : head + clen])
        return cls(run_id, ckpt, challenge, gid, OpeningProof.from_bytes(bytes(data[head + clen :])))


def _values_for(reader: Any, section: ZkSection, checkpoint: int) -> np.ndarray:
    from zk.quantize import flatten

    tensors = _model_tensors(reader.checkpoint_state(checkpoint))
    layout, vec, _ = flatten(tensors, section.params.quantizer)
    if layout != section.layout:
        raise ZkFormatError(f"checkpoint {checkpoint}'s tensors do not match the committed layout")
    return vec


def _secret_row(section: ZkSection, secrets_: ZkSecrets, checkpoint: int) -> list[int]:
    if secrets_.run_id != section.run_id or secrets_.genset_id != section.params.genset_id:
        raise ZkFormatError("the secrets file belongs to another run or generator set")
    if checkpoint not in secrets_.checkpoints:
        raise ZkFormatError(f"the secrets file has no blindings for checkpoint {checkpoint}")
    return secrets_.blindings[secrets_.checkpoints.index(checkpoint)]


def prove_ownership(
    proof_path: str | os.PathLike[str],
    secrets_: ZkSecrets,
    checkpoint: int,
    challenge: bytes,
    *,
    backend: Backend | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OwnershipProof:
    section = read_section(proof_path)
    com = section.commitment_for(checkpoint)
    blindings = _secret_row(section, secrets_, checkpoint)
    committer = Committer(section.params, backend or get_backend(), cache_dir)
    with _open_reader(proof_path) as reader:
        values = _values_for(reader, section, checkpoint)
    recomputed, _ = committer.commit_values(values, blindings)
    if recomputed.chunks != com.chunks:
        raise ZkFormatError(f"checkpoint {checkpoint}'s weights and blindings do not reproduce its commitment")
    ctx = Context(section.run_id, checkpoint)
    proof = prove_opening(committer, ctx, com, values, blindings, challenge=challenge)
    return OwnershipProof(section.run_id, checkpoint, challenge, section.params.genset_id, proof)


def open_chunks(
    proof_path: str | os.PathLike[str],
    secrets_: ZkSecrets,
    checkpoint: int,
    chunks: Sequence[int],
) -> dict[str, Any]:
    """A JSON-able document revealing the given chunks of a checkpoint's committed weights."""
    section = read_section(proof_path)
    com = section.commitment_for(checkpoint)
    blindings = _secret_row(section, secrets_, checkpoint)
    with _open_reader(proof_path) as reader:
        values = _values_for(reader, section, checkpoint)
    from zk.sigma import open_chunk

    committer = Committer(section.params, get_backend())  # no generators needed to open
    openings = []
    for j in chunks:
        if not 0 <= j < len(com.chunks):
            raise ZkFormatError(f"chunk {j} out of range 0..{len(com.chunks) - 1}")
        op = open_chunk(committer, com, values, blindings, j)
        openings.append(
            {
                "index": op.index,
                "values": list(op.values),
                "blinding": f"{op.blinding:064x}",
                "commitment": op.commitment.hex(),
                "path": [p.hex() for p in op.path],
            }
        )
    return {
        "kind": "pol-zk-opening",
        "schema_version": SCHEMA_VERSION,
        "run_id": section.run_id.hex(),
        "checkpoint": checkpoint,
        "chunks": openings,
    }


def parse_openings(doc: Any) -> tuple[bytes, int, list[ChunkOpening]]:
    try:
        if doc["kind"] != "pol-zk-opening" or doc["schema_version"] != SCHEMA_VERSION:
            raise ZkFormatError("not a pol zk opening document")
        run_id = bytes.fromhex(doc["run_id"])
        ckpt = doc["checkpoint"]
        if not isinstance(ckpt, int) or isinstance(ckpt, bool):
            raise TypeError("checkpoint")
        out = []
        for c in doc["chunks"]:
            index = c["index"]
            if not isinstance(index, int) or isinstance(index, bool):
                raise TypeError("chunk index must be an integer")
            vals = c["values"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                raise TypeError("values must be integers")
            blinding = int(c["blinding"], 16)
            if not 0 <= blinding < CURVE_ORDER:
                raise ValueError("blinding out of range")
            out.append(
                ChunkOpening(
                    index,
                    tuple(vals),
                    blinding,
                    bytes.fromhex(c["commitment"]),
                    tuple(bytes.fromhex(p) for p in c["path"]),
                )
            )
        return run_id, ckpt, out
    except ZkFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ZkFormatError(f"opening document is malformed ({exc})") from None


# --------------------------------------------------------------------------- verification


def _check(name: str, passed: bool, figure: str, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "figure": figure, "detail": detail}


def _is_trusted(verify_key: Any, signer: bytes) -> bool:
    """Whether ``signer`` is the key the verifier trusts (None: the proof's own signer is trusted)."""
    if verify_key is None:
        return True
    if hasattr(verify_key, "matches"):  # pol.keys.TrustedKey: a key file or only a fingerprint
        return bool(verify_key.matches(signer))
    return bytes(verify_key) == signer  # raw 32 bytes or a nacl VerifyKey


def verify_zk_section(
    proof_path: str,
    verify_key: Any = None,
    *,
    backend: Backend | None = None,
    ownership: tuple[bytes, bytes] | None = None,
    openings: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Judge the ``/zk`` section of a proof file; one dict per check.

    ``verify_key`` is the key the verifier trusts (nacl VerifyKey, pol.keys.TrustedKey, raw
    32 bytes) or None to only check against the proof's own signer key. ``ownership`` is
    ``(ownership proof bytes, expected challenge)``; ``openings`` a parsed opening document.
    Malformed input raises :class:`ZkFormatError` (an InputError).
    """
    from pol.errors import BadSignatureError
    from pol.keys import fingerprint, verify_signature

    section = read_section(proof_path)
    checks: list[dict[str, Any]] = []
    with _open_reader(proof_path) as reader:
        plan_digest = bytes(reader.plan_digest)
        proof_signer = bytes(reader.signer_public_key)

    checks.append(
        _check(
            "zk.bound_to_run",
            section.run_id == plan_digest,
            section.run_id.hex()[:16],
            "the /zk section names this proof's plan digest"
            if section.run_id == plan_digest
            else f"/zk is for run {section.run_id.hex()[:16]}, the proof is run {plan_digest.hex()[:16]}",
        )
    )
    # signature
    sig_ok, detail = True, "Ed25519 signature over the /zk digest by the proof's signer"
    if section.signer != proof_signer:
        sig_ok, detail = False, "the /zk section is signed by a different key than the proof"
    elif not _is_trusted(verify_key, section.signer):
        sig_ok, detail = False, f"signer {fingerprint(section.signer)} is not the trusted key"
    else:
        try:
            verify_signature(section.signer, SIGN_DOMAIN, section.digest(), section.signature)
        except BadSignatureError:
            sig_ok, detail = False, "the /zk signature does not verify (section edited after signing?)"
    checks.append(_check("zk.signature", sig_ok, fingerprint(section.signer), detail))

    # Merkle roots
    bad_roots = [i for i, (c, r) in enumerate(zip(section.commitments, section.stored_roots)) if c.root != r]
    bad_roots += [
        f"delta {i}" for i, (c, r) in enumerate(zip(section.deltas, section.stored_delta_roots)) if c.root != r
    ]
    n_roots = len(section.commitments) + len(section.deltas)
    checks.append(
        _check(
            "zk.merkle_roots",
            not bad_roots,
            f"{n_roots - len(bad_roots)}/{n_roots}",
            "stored roots recompute from the chunk commitments" if not bad_roots else f"mismatch at {bad_roots}",
        )
    )

    committer = Committer(section.params, backend or get_backend(), cache_dir)
    # points on the curve and in the subgroup
    be = committer.backend
    bad_points = 0
    total_points = 0
    for com in [*section.commitments, *section.deltas]:
        for c in com.chunks:
            total_points += 1
            try:
                be.decode(c)
            except ZkFormatError:
                bad_points += 1
    checks.append(
        _check(
            "zk.points",
            bad_points == 0,
            f"{total_points - bad_points}/{total_points}",
            "every commitment is a point of the prime-order subgroup of G1"
            if not bad_points
            else f"{bad_points} commitment(s) are off the curve or outside the subgroup",
        )
    )
    points_ok = bad_points == 0

    if section.linear_proofs:
        ok = 0
        first_fail = ""
        for k, (dcom, lp) in enumerate(zip(section.deltas, section.linear_proofs)):
            frm, to = section.checkpoints[k], section.checkpoints[k + 1]
            try:
                if not points_ok:
                    raise ProofRejected("skipped: invalid points")
                verify_linear(
                    committer, section.run_id, frm, to, section.commitments[k], section.commitments[k + 1], dcom, lp
                )
                ok += 1
            except ProofRejected as exc:
                first_fail = first_fail or f"checkpoint {frm} -> {to}: {exc}"
        n = len(section.linear_proofs)
        checks.append(
            _check(
                "zk.linear_relations",
                ok == n,
                f"{ok}/{n}",
                "C(W_next) = C(W_prev) + C(delta) for every consecutive pair" if ok == n else first_fail,
            )
        )

    if ownership is not None:
        checks.append(_ownership_check(committer, section, ownership[0], ownership[1], points_ok))
    if openings is not None:
        checks.append(_openings_check(committer, section, openings))
    clipped = sum(section.clipped)
    checks.append(
        _check(
            "zk.quantisation",
            True,
            f"{clipped} clipped",
            f"scale 2^-{section.params.scale_bits}, {section.params.bits}-bit signed, "
            f"{section.length} values x {len(section.checkpoints)} checkpoints (informational)",
        )
    )
    return checks


def _ownership_check(
    committer: Committer, section: ZkSection, data: bytes, challenge: bytes, points_ok: bool
) -> dict[str, Any]:
    own = OwnershipProof.from_bytes(data)
    name = "zk.ownership"
    if own.run_id != section.run_id:
        return _check(name, False, f"checkpoint {own.checkpoint}", "the ownership proof is for another run")
    if own.challenge != challenge:
        return _check(name, False, f"checkpoint {own.checkpoint}", "the ownership proof answers a different challenge")
    if own.genset_id != section.params.genset_id:
        return _check(name, False, f"checkpoint {own.checkpoint}", "the proof uses another generator set")
    if own.checkpoint not in section.checkpoints:
        return _check(name, False, f"checkpoint {own.checkpoint}", "that checkpoint is not committed in /zk")
    try:
        if not points_ok:
            raise ProofRejected("the section holds invalid points")
        verify_opening(
            committer,
            Context(section.run_id, own.checkpoint),
            section.commitment_for(own.checkpoint),
            own.proof,
            challenge=challenge,
        )
    except ProofRejected as exc:
        return _check(name, False, f"checkpoint {own.checkpoint}", str(exc))
    return _check(
        name,
        True,
        f"checkpoint {own.checkpoint}",
        "the prover knows the committed quantised weights and blindings (challenge-bound)",
    )


def _openings_check(committer: Committer, section: ZkSection, doc: Any) -> dict[str, Any]:
    run_id, ckpt, openings = parse_openings(doc)
    name = "zk.openings"
    if run_id != section.run_id:
        return _check(name, False, "0", "the openings are for another run")
    if ckpt not in section.checkpoints:
        return _check(name, False, f"0/{len(openings)} chunks of checkpoint {ckpt}",
                      "that checkpoint is not committed in /zk")
    com = section.commitment_for(ckpt)
    ok = 0
    fail = ""
    for op in openings:
        try:
            verify_chunk_opening(committer, com.root, len(com.chunks), op)
            if not 0 <= op.index < len(com.chunks) or op.commitment != com.chunks[op.index]:
                raise ProofRejected(f"chunk {op.index}'s commitment is not the one in /zk")
            expected = min(section.params.chunk_size, section.length - op.index * section.params.chunk_size)
            if len(op.values) != expected:
                raise ProofRejected(f"chunk {op.index} reveals {len(op.values)} values, expected {expected}")
            ok += 1
        except ProofRejected as exc:
            fail = fail or str(exc)
    n = len(openings)
    return _check(
        name,
        ok == n and n > 0,
        f"{ok}/{n} chunks of checkpoint {ckpt}",
        "revealed chunks match their commitments and the Merkle root" if ok == n and n else fail or "no chunks",
    )


__all__ = [
    "SCHEMA_VERSION",
    "SIGN_DOMAIN",
    "ZkSection",
    "ZkSecrets",
    "OwnershipProof",
    "build_section",
    "write_section",
    "read_section",
    "write_secrets",
    "read_secrets",
    "prove_ownership",
    "open_chunks",
    "parse_openings",
    "verify_zk_section",
]
