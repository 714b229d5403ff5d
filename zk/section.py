"""The ``/zk`` section of a proof file and the trainer's secrets file: data model and HDF5 I/O.

Layout (docs/ZK.md has the full table)::

    /zk                     attrs: schema_version, run_id, dst, chunk_size, scale_bits, bits,
                                   genset_id, length, layout, signer, signature
    /zk/checkpoints         int64 (n,)              indices of the committed checkpoints
    /zk/clipped             int64 (n,)              values clipped by quantisation, per checkpoint
    /zk/commitments         uint8 (n, chunks, 48)   compressed chunk commitments
    /zk/roots               uint8 (n, 32)           Merkle roots over each checkpoint's chunks
    /zk/binding_proofs      uint8 (n, 80)           each commitment opens to the quantised
                                                    checkpoint (checked by whoever holds it)

The signature is Ed25519 (the proof's signer key) over ``"pol-zk/section/v1" ||
section_digest``, where the digest is a length-framed SHA-256 over every field above (not over
HDF5 bytes), so it is independent of the backend and of HDF5 storage details. The blindings
never enter the proof file: they go to a separate secrets file (mode 0600) the trainer keeps.
Every reader validates shapes, types and sizes and raises :class:`ZkFormatError` otherwise.
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

from pol.smallfiles import parse_json
from zk.backend import CURVE_ORDER
from zk.errors import ZkFormatError
from zk.pedersen import Params, VectorCommitment
from zk.quantize import Layout
from zk.sigma import BindingProof

SCHEMA_VERSION = 2
GROUP = "zk"
SIGN_DOMAIN = b"pol-zk/section/v1"
SECRETS_KIND = "pol-zk-secrets"
MAX_CHECKPOINTS = 1 << 20
MAX_CHUNKS = 1 << 22
#: Most chunk commitments one array of the section may hold (checkpoints x chunks per
#: checkpoint): 2^24 x 48 bytes = 768 MiB. Also the byte cap on any dataset read from /zk.
MAX_TOTAL_CHUNKS = 1 << 24
MAX_DATASET_BYTES = MAX_TOTAL_CHUNKS * 48


# --------------------------------------------------------------------------- the section


@dataclass
class ZkSection:
    params: Params
    run_id: bytes
    layout: Layout
    checkpoints: list[int]
    clipped: list[int]
    commitments: list[VectorCommitment]
    binding_proofs: list[BindingProof]
    signer: bytes = b""
    signature: bytes = b""
    stored_roots: list[bytes] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.layout.total

    def commitment_for(self, checkpoint: int) -> VectorCommitment:
        if checkpoint not in self.checkpoints:
            raise ZkFormatError(f"checkpoint {checkpoint} is not committed in /zk (have {self.checkpoints})")
        return self.commitments[self.checkpoints.index(checkpoint)]

    def binding_proof_for(self, checkpoint: int) -> BindingProof:
        self.commitment_for(checkpoint)
        return self.binding_proofs[self.checkpoints.index(checkpoint)]

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
        for com, proof in zip(self.commitments, self.binding_proofs, strict=True):
            put(b"commitment", struct.pack(">Q", com.length) + b"".join(com.chunks))
            put(b"binding_proof", proof.to_bytes())
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
        g.create_dataset("binding_proofs", data=_rows([pr.to_bytes() for pr in section.binding_proofs],
                                                      BindingProof.SIZE))


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


def _dataset(g: Any, name: str, shape: tuple[int | None, ...], dtype: str) -> np.ndarray:
    """``/zk/<name>`` with exactly its documented dtype (docs/ZK.md): another width or byte order,
    though it may hold the same numbers, is not the signed format."""
    if name not in g or not hasattr(g[name], "dtype"):
        raise ZkFormatError(f"/zk lacks dataset {name!r}")
    ds = g[name]
    if ds.dtype != np.dtype(dtype) or ds.ndim != len(shape):
        raise ZkFormatError(f"/zk/{name} has dtype {ds.dtype} and {ds.ndim} dims; expected {dtype} with {len(shape)}")
    for have, want in zip(ds.shape, shape):
        if want is not None and have != want:
            raise ZkFormatError(f"/zk/{name} has shape {ds.shape}; expected {shape}")
    nbytes = int(ds.size) * ds.dtype.itemsize
    if nbytes > MAX_DATASET_BYTES:
        raise ZkFormatError(f"/zk/{name} declares {nbytes} bytes; at most {MAX_DATASET_BYTES} are read")
    # Unfiltered data occupies its full size on disk; less means unwritten (fill-value) regions,
    # i.e. a small file declaring a huge array. (A sanitised copy, pol.untrusted_h5, was bounded already.)
    if nbytes > 1 << 20 and hasattr(ds, "id") and not ds.id.get_create_plist().get_nfilters() \
            and ds.id.get_storage_size() < nbytes:
        raise ZkFormatError(f"/zk/{name} declares {nbytes} bytes but stores {ds.id.get_storage_size()}")
    return np.asarray(ds[()])


def _open_h5(path: str | os.PathLike[str], what: str) -> Any:
    """``h5py.File(path, "r")``, or ZkFormatError naming ``what`` if it cannot be opened."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ZkFormatError(f"{path} is not a readable {what} ({exc})") from None


def read_section(source: Any) -> ZkSection:
    """Parse and validate the ``/zk`` group of a proof (a path, or an open ProofReader whose
    sanitised tree holds it); raises ZkFormatError if absent or malformed. A path is read through
    the sandboxed reader (:mod:`pol.untrusted_h5`): a proof file is untrusted input."""
    if hasattr(source, "section"):
        return _section_from(source.section(GROUP), source.path)
    from pol.errors import ProofFormatError
    from pol.untrusted_h5 import UntrustedFile

    try:
        with UntrustedFile(source, what="proof file") as f:
            return _section_from(f.root.get(GROUP), source)
    except ProofFormatError as exc:
        raise ZkFormatError(str(exc)) from None


def _section_from(g: Any, path: Any) -> ZkSection:
    from pol.errors import ProofFormatError
    from pol.proof_layout import ZK_SECTION

    if g is None or not g.is_group:
        raise ZkFormatError(f"{path} has no /{GROUP} section (run `pol zk commit` first)")
    try:  # exact members, dtypes and attribute types: the signature covers these fields only
        ZK_SECTION.validate(g, f"/{GROUP}")
    except ProofFormatError as exc:
        raise ZkFormatError(str(exc)) from None
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
        lay = parse_json(_attr(g, "layout", str), "layout", ValueError)  # bounded nesting, no NaN or duplicates
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
    ckpts = _dataset(g, "checkpoints", (None,), "int64")
    n = len(ckpts)
    if not 1 <= n <= MAX_CHECKPOINTS or len(set(ckpts.tolist())) != n or (ckpts < 0).any():
        raise ZkFormatError("/zk/checkpoints must be 1.. distinct non-negative indices")
    if list(ckpts) != sorted(ckpts.tolist()):
        raise ZkFormatError("/zk/checkpoints must be increasing")
    if n * n_chunks > MAX_TOTAL_CHUNKS:
        raise ZkFormatError(
            f"/zk declares {n} checkpoints x {n_chunks} chunks; at most {MAX_TOTAL_CHUNKS} commitments are supported"
        )
    clipped = _dataset(g, "clipped", (n,), "int64")
    coms = _dataset(g, "commitments", (n, n_chunks, 48), "uint8")
    roots = _dataset(g, "roots", (n, 32), "uint8")
    proofs = _dataset(g, "binding_proofs", (n, BindingProof.SIZE), "uint8")
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
        binding_proofs=[BindingProof.from_bytes(bytes(p.tobytes())) for p in proofs],
        signer=_hex_attr(g, "signer", 32),
        signature=_hex_attr(g, "signature", 64),
        stored_roots=[bytes(r.tobytes()) for r in roots],
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


def _scalars_array(rows: Sequence[Sequence[int]]) -> np.ndarray:
    n_chunks = len(rows[0]) if rows else 0
    arr = np.zeros((len(rows), n_chunks, 32), dtype=np.uint8)
    for i, row in enumerate(rows):
        arr[i] = np.frombuffer(b"".join(int(b).to_bytes(32, "big") for b in row), dtype=np.uint8).reshape(-1, 32)
    return arr


def read_secrets(path: str | os.PathLike[str]) -> ZkSecrets:
    with _open_h5(path, "secrets file") as f:
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

            bl = scalars("blindings")
        except ZkFormatError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise ZkFormatError(f"{path} is malformed: {exc}") from None
    if len(run_id) != 32 or len(gid) != 32 or len(bl) != len(ckpts):
        raise ZkFormatError(f"{path} is malformed (ids or counts)")
    return ZkSecrets(run_id, gid, ckpts, bl)


__all__ = [
    "SCHEMA_VERSION",
    "SIGN_DOMAIN",
    "ZkSection",
    "ZkSecrets",
    "write_section",
    "read_section",
    "write_secrets",
    "read_secrets",
]
