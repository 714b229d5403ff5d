"""The ``/zk`` section of a proof file: writing it, reading it, verifying it.

Layout (docs/ZK.md has the full table)::

    /zk                     attrs: schema_version, run_id, dst, chunk_size, scale_bits, bits,
                                   genset_id, length, layout_names, layout_shapes, signer, signature
    /zk/checkpoints         int64 (n,)              indices of the committed checkpoints
    /zk/clipped             int64 (n,)              values clipped by quantisation, per checkpoint
    /zk/commitments         uint8 (n, chunks, 48)   compressed chunk commitments
    /zk/roots               uint8 (n, 32)           Merkle roots over each checkpoint's chunks
    /zk/delta_commitments   uint8 (n-1, chunks, 48) commitments to q(W_i+1) - q(W_i)
    /zk/delta_roots         uint8 (n-1, 32)
    /zk/linear_proofs       uint8 (n-1, 80)         C(W_i+1) = C(W_i) + C(Δ_i)

The signature is Ed25519 (the proof's signer key) over ``"pol-zk/section/v1" ||
section_digest``, where the digest is a length-framed SHA-256 over every field above (not over
HDF5 bytes), so it is independent of the backend and of HDF5 storage details. The blindings
never enter the proof file: they go to a separate secrets file the trainer keeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zk.backend import CURVE_ORDER, Backend, get_backend
from zk.errors import ProofRejected, ZkFormatError
from zk.merkle import merkle_root
from zk.pedersen import Committer, Params, VectorCommitment
from zk.quantize import Layout
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

SCHEMA_VERSION = 1
GROUP = "zk"
SIGN_DOMAIN = b"pol-zk/section/v1"
SECRETS_KIND = "pol-zk-secrets"
OWNERSHIP_MAGIC = b"POLZKOWN"
MAX_CHECKPOINTS = 1 << 20
MAX_CHUNKS = 1 << 22


# --------------------------------------------------------------------------- the section


@dataclass
class ZkSection:
    params: Params
    run_id: bytes
    layout: Layout
    checkpoints: list[int]
    clipped: list[int]
    commitments: list[VectorCommitment]
    deltas: list[VectorCommitment] = field(default_factory=list)
    linear_proofs: list[LinearProof] = field(default_factory=list)
    signer: bytes = b""
    signature: bytes = b""
    stored_roots: list[bytes] = field(default_factory=list)
    stored_delta_roots: list[bytes] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.layout.total

    def commitment_for(self, checkpoint: int) -> VectorCommitment:
        if checkpoint not in self.checkpoints:
            raise ZkFormatError(f"checkpoint {checkpoint} is not committed in /zk (have {self.checkpoints})")
        return self.commitments[self.checkpoints.index(checkpoint)]

    def digest(self) -> bytes:
        h = hashlib.sha256(b"pol-zk/section-digest/v1")

        def put(label: bytes, data: bytes) -> None:
            h.update(struct.pack(">I", len(label)) + label + struct.pack(">Q", len(data)) + data)

        p = self.params
        put(b"schema_version", struct.pack(">Q", SCHEMA_VERSION))
        put(b"run_id", self.run_id)
        put(b"dst", p.dst)
        put(b"params", struct.pack(">QQQ", p.chunk_size, p.scale_bits, p.bits))
        put(b"genset_id", p.genset_id)
        put(b"layout", _layout_json(self.layout).encode())
        put(b"checkpoints", np.asarray(self.checkpoints, dtype=">i8").tobytes())
        put(b"clipped", np.asarray(self.clipped, dtype=">i8").tobytes())
        for com in self.commitments:
            put(b"commitment", struct.pack(">Q", com.length) + b"".join(com.chunks))
        for com, proof in zip(self.deltas, self.linear_proofs):
            put(b"delta", struct.pack(">Q", com.length) + b"".join(com.chunks))
            put(b"linear_proof", proof.to_bytes())
        put(b"signer", self.signer)
        return h.digest()


def _layout_json(layout: Layout) -> str:
    return json.dumps({"names": list(layout.names), "shapes": [list(s) for s in layout.shapes]}, separators=(",", ":"))


@dataclass
class ZkSecrets:
    """The trainer's secret blindings (one per chunk) for every commitment in the section."""

    run_id: bytes
    genset_id: bytes
    checkpoints: list[int]
    blindings: list[list[int]]
    delta_blindings: list[list[int]]


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
    progress: Any = None,
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
        if progress is not None:
            progress(1)
    assert layout is not None
    section = ZkSection(
        params, run_id, layout, indices, clipped, coms, dcoms, proofs, signer=bytes(signing_key.verify_key)
    )
    section.signature = sign(signing_key, SIGN_DOMAIN, section.digest())
    secrets_ = ZkSecrets(run_id, params.genset_id, indices, blinds, dblinds)
    return section, secrets_


def _u8(arr: Any) -> np.ndarray:
    return np.frombuffer(bytes(arr), dtype=np.uint8) if isinstance(arr, bytes | bytearray) else np.asarray(arr, np.uint8)


def write_section(path: str | os.PathLike[str], section: ZkSection, *, overwrite: bool = False) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        if GROUP in f:
            if not overwrite:
                raise ZkFormatError(f"{path} already has a /{GROUP} section (use --force to replace it)")
            del f[GROUP]
        g = f.create_group(GROUP)
        p = section.params
        g.attrs["schema_version"] = SCHEMA_VERSION
        g.attrs["run_id"] = section.run_id.hex()
        g.attrs["dst"] = p.dst.decode("ascii")
        g.attrs["chunk_size"] = p.chunk_size
        g.attrs["scale_bits"] = p.scale_bits
        g.attrs["bits"] = p.bits
        g.attrs["genset_id"] = p.genset_id.hex()
        g.attrs["length"] = section.length
        g.attrs["layout"] = _layout_json(section.layout)
        g.attrs["signer"] = section.signer.hex()
        g.attrs["signature"] = section.signature.hex()
        n = len(section.checkpoints)
        n_chunks = len(section.commitments[0].chunks)
        g.create_dataset("checkpoints", data=np.asarray(section.checkpoints, dtype=np.int64))
        g.create_dataset("clipped", data=np.asarray(section.clipped, dtype=np.int64))
        g.create_dataset("commitments", data=_chunks_array(section.commitments, n, n_chunks))
        g.create_dataset("roots", data=_rows([c.root for c in section.commitments], 32))
        nd = len(section.deltas)
        g.create_dataset("delta_commitments", data=_chunks_array(section.deltas, nd, n_chunks))
        g.create_dataset("delta_roots", data=_rows([c.root for c in section.deltas], 32))
        g.create_dataset("linear_proofs", data=_rows([pr.to_bytes() for pr in section.linear_proofs], 80))


def _chunks_array(coms: Sequence[VectorCommitment], n: int, n_chunks: int) -> np.ndarray:
    arr = np.zeros((n, n_chunks, 48), dtype=np.uint8)
    for i, com in enumerate(coms):
        arr[i] = np.frombuffer(b"".join(com.chunks), dtype=np.uint8).reshape(n_chunks, 48)
    return arr


def _rows(items: Sequence[bytes], width: int) -> np.ndarray:
    arr = np.zeros((len(items), width), dtype=np.uint8)
    for i, b in enumerate(items):
        arr[i] = np.frombuffer(b, dtype=np.uint8)
    return arr


def _attr(g: Any, name: str, kind: type) -> Any:
    if name not in g.attrs:
        raise ZkFormatError(f"/zk lacks attribute {name!r}")
    v = g.attrs[name]
    if kind is int:
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise ZkFormatError(f"/zk attribute {name!r} must be an integer")
        return int(v)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        raise ZkFormatError(f"/zk attribute {name!r} must be a string")
    return v


def _hex_attr(g: Any, name: str, n: int) -> bytes:
    try:
        raw = bytes.fromhex(_attr(g, name, str))
    except ValueError:
        raise ZkFormatError(f"/zk attribute {name!r} is not hex") from None
    if len(raw) != n:
        raise ZkFormatError(f"/zk attribute {name!r} must be {n} bytes, found {len(raw)}")
    return raw


def _dataset(g: Any, name: str, shape: tuple[int | None, ...], kinds: str) -> np.ndarray:
    if name not in g or not hasattr(g[name], "dtype"):
        raise ZkFormatError(f"/zk lacks dataset {name!r}")
    ds = g[name]
    if ds.dtype.kind not in kinds or ds.ndim != len(shape):
        raise ZkFormatError(f"/zk/{name} has dtype {ds.dtype} and {ds.ndim} dims; expected {kinds} with {len(shape)}")
    for have, want in zip(ds.shape, shape):
        if want is not None and have != want:
            raise ZkFormatError(f"/zk/{name} has shape {ds.shape}; expected {shape}")
    return np.asarray(ds[()])


def read_section(path: str | os.PathLike[str]) -> ZkSection:
    """Parse and validate the ``/zk`` group (raises ZkFormatError if absent or malformed)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ZkFormatError(f"{path} is not a readable HDF5 file ({exc})") from None
    with f:
        if GROUP not in f or not isinstance(f[GROUP], h5py.Group):
            raise ZkFormatError(f"{path} has no /{GROUP} section (run `pol zk commit` first)")
        g = f[GROUP]
        try:
            return _parse_section(g)
        except ZkFormatError:
            raise
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            raise ZkFormatError(f"/zk is malformed: {exc}") from None


def _parse_section(g: Any) -> ZkSection:
    version = _attr(g, "schema_version", int)
    if version != SCHEMA_VERSION:
        raise ZkFormatError(f"/zk schema version {version} is not supported (this build reads {SCHEMA_VERSION})")
    try:
        dst = _attr(g, "dst", str).encode("ascii")
    except UnicodeEncodeError:
        raise ZkFormatError("/zk dst must be ASCII") from None
    if not 1 <= len(dst) <= 255:
        raise ZkFormatError("/zk dst must be 1..255 bytes (RFC 9380)")
    try:
        params = Params(_attr(g, "chunk_size", int), _attr(g, "scale_bits", int), _attr(g, "bits", int), dst)
    except ValueError as exc:
        raise ZkFormatError(f"/zk parameters are invalid: {exc}") from None
    stored_gid = _hex_attr(g, "genset_id", 32)
    if stored_gid != params.genset_id:
        raise ZkFormatError("/zk genset_id does not match its dst and chunk size")
    try:
        lay = json.loads(_attr(g, "layout", str))
        names = lay["names"]
        shapes = lay["shapes"]
        if not (isinstance(names, list) and isinstance(shapes, list) and len(names) == len(shapes)):
            raise TypeError("names/shapes")
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise TypeError("names")
        if not all(isinstance(s, list) and all(isinstance(d, int) and 0 <= d < 1 << 40 for d in s) for s in shapes):
            raise TypeError("shapes")
        layout = Layout(tuple(names), tuple(tuple(s) for s in shapes))
    except (ValueError, TypeError, KeyError) as exc:
        raise ZkFormatError(f"/zk layout is malformed ({exc})") from None
    length = _attr(g, "length", int)
    if length != layout.total or length <= 0:
        raise ZkFormatError(f"/zk length {length} does not match its layout ({layout.total} values)")
    n_chunks = max(1, -(-length // params.chunk_size))
    if n_chunks > MAX_CHUNKS:
        raise ZkFormatError("/zk has too many chunks")
    ckpts = _dataset(g, "checkpoints", (None,), "iu")
    n = len(ckpts)
    if not 1 <= n <= MAX_CHECKPOINTS or len(set(ckpts.tolist())) != n or (ckpts < 0).any():
        raise ZkFormatError("/zk/checkpoints must be 1.. distinct non-negative indices")
    if list(ckpts) != sorted(ckpts.tolist()):
        raise ZkFormatError("/zk/checkpoints must be increasing")
    clipped = _dataset(g, "clipped", (n,), "iu")
    coms = _dataset(g, "commitments", (n, n_chunks, 48), "u")
    roots = _dataset(g, "roots", (n, 32), "u")
    nd = _dataset(g, "linear_proofs", (None, 80), "u").shape[0]
    if nd not in (0, n - 1):
        raise ZkFormatError(f"/zk has {nd} linear proofs for {n} checkpoints (expected 0 or {n - 1})")
    dcoms = _dataset(g, "delta_commitments", (nd, n_chunks, 48), "u")
    droots = _dataset(g, "delta_roots", (nd, 32), "u")
    lps = _dataset(g, "linear_proofs", (nd, 80), "u")
    gid = params.genset_id

    def vc(arr: np.ndarray) -> VectorCommitment:
        return VectorCommitment(tuple(bytes(row.tobytes()) for row in arr), length, gid)

    return ZkSection(
        params=params,
        run_id=_hex_attr(g, "run_id", 32),
        layout=layout,
        checkpoints=[int(c) for c in ckpts],
        clipped=[int(c) for c in clipped],
        commitments=[vc(c) for c in coms],
        deltas=[vc(c) for c in dcoms],
        linear_proofs=[LinearProof.from_bytes(bytes(p.tobytes())) for p in lps],
        signer=_hex_attr(g, "signer", 32),
        signature=_hex_attr(g, "signature", 64),
        stored_roots=[bytes(r.tobytes()) for r in roots],
        stored_delta_roots=[bytes(r.tobytes()) for r in droots],
    )


# --------------------------------------------------------------------------- secrets file


def write_secrets(path: str | os.PathLike[str], secrets_: ZkSecrets, *, overwrite: bool = False) -> None:
    """Write the blindings (mode 0600). They are what makes the commitments hiding: keep them."""
    import h5py

    p = Path(path)
    if p.exists() and not overwrite:
        raise ZkFormatError(f"{p} exists; refusing to overwrite secrets (use --force)")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.chmod(p, 0o600)
    with h5py.File(p, "w") as f:
        f.attrs["kind"] = SECRETS_KIND
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["run_id"] = secrets_.run_id.hex()
        f.attrs["genset_id"] = secrets_.genset_id.hex()
        f.create_dataset("checkpoints", data=np.asarray(secrets_.checkpoints, dtype=np.int64))
        f.create_dataset("blindings", data=_scalars_array(secrets_.blindings))
        f.create_dataset("delta_blindings", data=_scalars_array(secrets_.delta_blindings))


def _scalars_array(rows: Sequence[Sequence[int]]) -> np.ndarray:
    n_chunks = len(rows[0]) if rows else 0
    arr = np.zeros((len(rows), n_chunks, 32), dtype=np.uint8)
    for i, row in enumerate(rows):
        arr[i] = np.frombuffer(b"".join(int(b).to_bytes(32, "big") for b in row), dtype=np.uint8).reshape(-1, 32)
    return arr


def read_secrets(path: str | os.PathLike[str]) -> ZkSecrets:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ZkFormatError(f"{path} is not a readable secrets file ({exc})") from None
    with f:
        try:
            if f.attrs.get("kind") != SECRETS_KIND or int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                raise ZkFormatError(f"{path} is not a pol zk secrets file (version {SCHEMA_VERSION})")
            run_id = bytes.fromhex(str(f.attrs["run_id"]))
            gid = bytes.fromhex(str(f.attrs["genset_id"]))
            ckpts = [int(c) for c in np.asarray(f["checkpoints"][()], dtype=np.int64)]

            def scalars(name: str) -> list[list[int]]:
                arr = np.asarray(f[name][()])
                if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 32:
                    raise ZkFormatError(f"{path}: /{name} must be uint8 (n, chunks, 32)")
                out = [[int.from_bytes(bytes(c.tobytes()), "big") for c in row] for row in arr]
                if any(v >= CURVE_ORDER for row in out for v in row):
                    raise ZkFormatError(f"{path}: /{name} holds a non-canonical scalar")
                return out

            bl, dbl = scalars("blindings"), scalars("delta_blindings")
        except ZkFormatError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise ZkFormatError(f"{path} is malformed: {exc}") from None
    if len(run_id) != 32 or len(gid) != 32 or len(bl) != len(ckpts):
        raise ZkFormatError(f"{path} is malformed (ids or counts)")
    return ZkSecrets(run_id, gid, ckpts, bl, dbl)


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
            vals = c["values"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                raise TypeError("values must be integers")
            blinding = int(c["blinding"], 16)
            if not 0 <= blinding < CURVE_ORDER:
                raise ValueError("blinding out of range")
            out.append(
                ChunkOpening(
                    int(c["index"]),
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


def _trusted_bytes(verify_key: Any) -> bytes | None:
    if verify_key is None:
        return None
    if isinstance(verify_key, bytes | bytearray):
        return bytes(verify_key)
    vk = getattr(verify_key, "verify_key", verify_key)  # pol.keys.TrustedKey or nacl VerifyKey
    if vk is None:
        return None
    return bytes(vk)


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
    else:
        trusted = verify_key
        if trusted is not None and hasattr(trusted, "matches"):
            if not trusted.matches(section.signer):
                sig_ok, detail = False, f"signer {fingerprint(section.signer)} is not the trusted key"
        else:
            tb = _trusted_bytes(trusted)
            if tb is not None and tb != section.signer:
                sig_ok, detail = False, f"signer {fingerprint(section.signer)} is not the trusted key"
        if sig_ok:
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
