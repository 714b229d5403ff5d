"""Linking zk to the proof file: commit its checkpoints, prove ownership, open chunks.

``build_section`` reads the stored checkpoints through :class:`pol.proof_file.ProofReader`,
commits the ``model/`` float tensors of each with a binding proof tied to the run, the
checkpoint index and the state digest the chain records for it, and signs the section (see
:mod:`zk.section` for the layout). Verification lives in :mod:`zk.verify`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zk.backend import CURVE_ORDER, Backend, get_backend
from zk.errors import ZkFormatError
from zk.pedersen import Committer, Params, VectorCommitment
from zk.quantize import Layout
from zk.section import (
    SIGN_DOMAIN,
    ZkSecrets,
    ZkSection,
    read_secrets,
    read_section,
    write_secrets,
    write_section,
)
from zk.sigma import BindingProof, ChunkOpening, Context, OpeningProof, open_chunk, prove_opening
from zk.weights import commit_weights, quantised

OWNERSHIP_MAGIC = b"POLZKOWN"
OWNERSHIP_VERSION = 1
OPENING_KIND = "pol-zk-opening"
OPENING_VERSION = 1
#: Largest ownership proof or opening document read (a 2^24-value chunk is 512 MiB of scalars).
MAX_EVIDENCE_BYTES = 1 << 28


# --------------------------------------------------------------------------- proof file access


def open_reader(path: str | os.PathLike[str]) -> Any:
    """A :class:`pol.proof_file.ProofReader` (only its public checkpoint attributes are used)."""
    from pol.proof_file import ProofReader

    return ProofReader(path)


def model_tensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The committed part of a checkpoint: its ``model/`` float tensors."""
    return {k: v for k, v in state.items() if k.startswith("model/") and np.asarray(v).dtype.kind == "f"}


def run_id_of(reader: Any) -> bytes:
    """The run id a /zk section names: the proof's plan digest."""
    return bytes(reader.plan.digest())


def checkpoint_context(reader: Any, checkpoint: int) -> Context:
    """What a binding proof for ``checkpoint`` is tied to: run, index, and the chain's state digest."""
    if not 0 <= checkpoint < len(reader.state_digests):
        raise ZkFormatError(f"checkpoint {checkpoint} is not in the proof's chain ({len(reader.state_digests)} links)")
    return Context(run_id_of(reader), checkpoint, bytes(reader.state_digests[checkpoint]))


def build_section(
    reader: Any,
    signing_key: Any,
    *,
    params: Params | None = None,
    backend: Backend | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[ZkSection, ZkSecrets]:
    """Commit the ``model/`` float tensors of every stored checkpoint and sign the section."""
    from pol.keys import sign

    params = params or Params()
    committer = Committer(params, backend or get_backend(), cache_dir)
    if bytes(signing_key.verify_key) != bytes(reader.signer_public_key):
        raise ZkFormatError("the signing key does not match the proof's signer key")
    indices = sorted(int(i) for i in reader.stored_checkpoints)
    if not indices:
        raise ZkFormatError("the proof holds no stored checkpoints to commit")
    layout: Layout | None = None
    coms: list[VectorCommitment] = []
    proofs: list[BindingProof] = []
    blinds: list[list[int]] = []
    clipped: list[int] = []
    for i in indices:
        tensors = model_tensors(reader.checkpoint_state(i))
        if not tensors:
            raise ZkFormatError(f"checkpoint {i} has no model/ float tensors to commit")
        wc, bl = commit_weights(tensors, checkpoint_context(reader, i), committer=committer)
        if layout is None:
            layout = wc.layout
        elif wc.layout != layout:
            raise ZkFormatError(f"checkpoint {i} has a different set or shape of model tensors")
        coms.append(wc.commitment)
        proofs.append(wc.binding)
        blinds.append(bl)
        clipped.append(wc.clipped)
    assert layout is not None
    run_id = run_id_of(reader)
    section = ZkSection(params, run_id, layout, indices, clipped, coms, proofs, signer=bytes(signing_key.verify_key))
    section.signature = sign(signing_key, SIGN_DOMAIN, section.digest())
    return section, ZkSecrets(run_id, params.genset_id, indices, blinds)


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
            + struct.pack(">H", OWNERSHIP_VERSION)
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
        if version != OWNERSHIP_VERSION:
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
    layout, vec, _ = quantised(model_tensors(reader.checkpoint_state(checkpoint)), section.params)
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
    with open_reader(proof_path) as reader:
        values = _values_for(reader, section, checkpoint)
    recomputed, _ = committer.commit_values(values, blindings)
    if recomputed.chunks != com.chunks:
        raise ZkFormatError(f"checkpoint {checkpoint}'s weights and blindings do not reproduce its commitment")
    ctx = Context(section.run_id, checkpoint)  # the opening proof is bound to the verifier's challenge
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
    with open_reader(proof_path) as reader:
        values = _values_for(reader, section, checkpoint)
    committer = Committer(section.params, get_backend())  # no generators needed to open
    openings = []
    for j in chunks:
        if not 0 <= j < len(com.chunks):
            raise ZkFormatError(f"chunk {j} out of range 0..{len(com.chunks) - 1}")
        openings.append(open_chunk(committer, com, values, blindings, j))
    return opening_document(section.run_id, checkpoint, openings)


def opening_document(run_id: bytes, checkpoint: int, openings: Sequence[ChunkOpening]) -> dict[str, Any]:
    """The JSON document ``pol zk open`` writes (read back by :func:`parse_openings`)."""
    return {
        "kind": OPENING_KIND,
        "schema_version": OPENING_VERSION,
        "run_id": run_id.hex(),
        "checkpoint": checkpoint,
        "chunks": [
            {
                "index": op.index,
                "values": list(op.values),
                "blinding": f"{op.blinding:064x}",
                "commitment": op.commitment.hex(),
                "path": [p.hex() for p in op.path],
            }
            for op in openings
        ],
    }


def parse_openings(doc: Any) -> tuple[bytes, int, list[ChunkOpening]]:
    try:
        if doc["kind"] != OPENING_KIND or doc["schema_version"] != OPENING_VERSION:
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




__all__ = [
    "OwnershipProof",
    "build_section",
    "checkpoint_context",
    "write_section",
    "read_section",
    "write_secrets",
    "read_secrets",
    "prove_ownership",
    "open_chunks",
    "opening_document",
    "parse_openings",
]
