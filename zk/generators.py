"""The shared Pedersen generators: derivation, identity, and the on-disk cache.

Every generator is derived by RFC 9380 hash-to-curve (suite ``BLS12381G1_XMD:SHA-256_SSWU_RO_``)
under the domain-separation tag :data:`DEFAULT_DST`, so nobody knows a discrete-log relation
between them::

    G_i = hash_to_curve(b"pol-zk/G/" || u64_be(i), DST)      for i in 0..size-1
    H   = hash_to_curve(b"pol-zk/H", DST)                      (the blinding generator)

A generator set is identified by ``genset_id = SHA-256("pol-zk/genset/v1" || u16(len DST) ||
DST || u64(size))``, which a verifier recomputes from the parameters alone. Deriving is slow
(about 3 ms a point on py-ecc), so sets are cached under ``$POL_ZK_CACHE`` (default
``~/.cache/proof-of-learning/zk``) as raw big-endian affine coordinates with a SHA-256 of the
body; a load re-derives H and a few random G_i to catch a stale or foreign cache.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zk.backend import Backend, get_backend
from zk.errors import ZkFormatError

#: Domain-separation tag for hash-to-curve of the generators (includes the RFC 9380 suite id).
DEFAULT_DST = b"POL-ZK-V01-PEDERSEN-GENERATORS-WITH-BLS12381G1_XMD:SHA-256_SSWU_RO_"
#: Environment variable for the cache directory.
CACHE_ENV = "POL_ZK_CACHE"
_MAGIC = b"POLZKGEN"
_VERSION = 1
_HEADER = struct.Struct(">8sHQ32s32s")  # magic, version, size, genset_id, sha256(body)
_SPOT_CHECKS = 3


def genset_id(size: int, dst: bytes = DEFAULT_DST) -> bytes:
    """The 32-byte identifier of the generator set of ``size`` G_i (plus H) under ``dst``."""
    if not 0 < size < 1 << 40:
        raise ValueError(f"generator set size must be positive, got {size}")
    return hashlib.sha256(b"pol-zk/genset/v1" + struct.pack(">H", len(dst)) + dst + struct.pack(">Q", size)).digest()


def g_message(i: int) -> bytes:
    return b"pol-zk/G/" + struct.pack(">Q", i)


H_MESSAGE = b"pol-zk/H"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "proof-of-learning" / "zk"


@dataclass
class GeneratorSet:
    """``size`` generators G_i and the blinding generator H, as points of one backend."""

    size: int
    dst: bytes
    backend: Backend
    g: list[Any]
    h: Any
    _prepared: Any = field(default=None, repr=False)

    @property
    def id(self) -> bytes:
        return genset_id(self.size, self.dst)

    @property
    def prepared(self) -> Any:
        if self._prepared is None:
            self._prepared = self.backend.prepare(self.g, self.h)
        return self._prepared

    @classmethod
    def derive(cls, size: int, dst: bytes = DEFAULT_DST, backend: Backend | None = None) -> GeneratorSet:
        """Derive by hash-to-curve (no cache)."""
        be = backend or get_backend()
        genset_id(size, dst)  # validates size
        g = [be.hash_to_curve(g_message(i), dst) for i in range(size)]
        return cls(size, dst, be, g, be.hash_to_curve(H_MESSAGE, dst))

    @classmethod
    def load(
        cls,
        size: int,
        dst: bytes = DEFAULT_DST,
        backend: Backend | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        write_cache: bool = True,
    ) -> GeneratorSet:
        """Load from the cache, deriving (and caching) the set on a miss."""
        be = backend or get_backend()
        path = cache_path(size, dst, cache_dir)
        if path.exists():
            try:
                return _read_cache(path, size, dst, be)
            except ZkFormatError:
                pass  # a corrupt or foreign cache is rebuilt, never trusted
        gs = cls.derive(size, dst, be)
        if write_cache:
            write_cache_file(gs, path)
        return gs


def cache_path(size: int, dst: bytes = DEFAULT_DST, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / f"genset-{genset_id(size, dst).hex()[:24]}-{size}.bin"


def write_cache_file(gs: GeneratorSet, path: Path) -> None:
    body = b"".join(gs.backend.to_xy(p) for p in [gs.h, *gs.g])
    header = _HEADER.pack(_MAGIC, _VERSION, gs.size, gs.id, hashlib.sha256(body).digest())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".genset-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(body)
        os.replace(tmp, path)  # atomic: concurrent writers leave one whole file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, size: int, dst: bytes, be: Backend) -> GeneratorSet:
    data = path.read_bytes()
    if len(data) != _HEADER.size + 96 * (size + 1):
        raise ZkFormatError(f"{path}: generator cache has the wrong length")
    magic, version, fsize, fid, digest = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]  # bytes, not a memoryview: slicing bytes is ~2x faster to parse
    if magic != _MAGIC or version != _VERSION or fsize != size or fid != genset_id(size, dst):
        raise ZkFormatError(f"{path}: generator cache header does not match")
    if hashlib.sha256(body).digest() != digest:
        raise ZkFormatError(f"{path}: generator cache is corrupt")
    pts = be.from_xy_trusted(body, size + 1)
    gs = GeneratorSet(size, dst, be, pts[1:], pts[0])
    # Spot checks: H and a few random G_i must re-derive to what the file holds.
    idx = [secrets.randbelow(size) for _ in range(min(_SPOT_CHECKS, size))]
    if be.encode(gs.h) != be.encode(be.hash_to_curve(H_MESSAGE, dst)) or any(
        be.encode(gs.g[i]) != be.encode(be.hash_to_curve(g_message(i), dst)) for i in idx
    ):
        raise ZkFormatError(f"{path}: generator cache does not match its derivation")
    return gs


__all__ = ["DEFAULT_DST", "CACHE_ENV", "GeneratorSet", "genset_id", "cache_path", "default_cache_dir"]
