"""The small curve interface every zk computation goes through, and backend selection.

Two implementations give byte-identical results (same RFC 9380 hash-to-curve suite, same
compressed ZCash/IETF encoding):

* ``pyecc``: the portable reference. Plain Python integers for the arithmetic (with py-ecc's
  constants and hash-to-curve), always available, slow.
* ``arkworks``: py-arkworks-bls12381 (the ``fast`` extra), Rust arithmetic.

Pick one with :func:`get_backend` (``name`` or the ``POL_ZK_BACKEND`` environment variable:
``pyecc``, ``arkworks`` or ``auto``; ``auto`` prefers arkworks when it imports).
Points are opaque backend objects; everything that leaves a backend is 48-byte compressed
bytes, so proofs and commitments never depend on which backend wrote them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from zk.errors import BackendUnavailableError

#: Order of the BLS12-381 G1 subgroup (the scalar field).
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
#: Environment variable that picks the backend.
BACKEND_ENV = "POL_ZK_BACKEND"

Point = Any


@runtime_checkable
class Backend(Protocol):
    """Group operations on BLS12-381 G1 (scalars are Python ints, reduced mod r inside)."""

    name: str

    def identity(self) -> Point: ...

    def add(self, a: Point, b: Point) -> Point: ...

    def neg(self, a: Point) -> Point: ...

    def mul(self, a: Point, k: int) -> Point: ...

    def msm(self, points: Sequence[Point], scalars: Sequence[int]) -> Point:
        """``sum(k_i * P_i)``."""
        ...

    def eq(self, a: Point, b: Point) -> bool: ...

    def encode(self, a: Point) -> bytes:
        """48-byte compressed encoding."""
        ...

    def decode(self, data: bytes) -> Point:
        """Inverse of :meth:`encode`; raises PointDecodeError off the curve or outside G1."""
        ...

    def hash_to_curve(self, msg: bytes, dst: bytes) -> Point:
        """RFC 9380 ``BLS12381G1_XMD:SHA-256_SSWU_RO_``."""
        ...

    def to_xy(self, a: Point) -> bytes:
        """96-byte uncompressed big-endian ``x || y`` (not the identity)."""
        ...

    def from_xy_trusted(self, buf: bytes, count: int) -> list[Point]:
        """Parse ``count`` points written by :meth:`to_xy` without curve checks (own cache)."""
        ...

    def prepare(self, gens: Sequence[Point], h: Point) -> Any:
        """Per-generator-set precomputation for :meth:`commit_rows`."""
        ...

    def commit_rows(self, prepared: Any, values: np.ndarray, blindings: Sequence[int]) -> list[Point]:
        """``[sum_i values[j, i] * G_i + blindings[j] * H for each row j]`` (small int values)."""
        ...


def available_backends() -> list[str]:
    """Names of the backends that can be used here (reference first)."""
    names = ["pyecc"]
    try:
        import py_arkworks_bls12381  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("arkworks")
    return names


@lru_cache(maxsize=None)
def _make(name: str) -> Backend:
    if name == "pyecc":
        from zk._backend_pyecc import PyEccBackend

        return PyEccBackend()
    if name == "arkworks":
        try:
            from zk._backend_arkworks import ArkworksBackend
        except ImportError as exc:
            raise BackendUnavailableError(
                "backend 'arkworks' needs py-arkworks-bls12381: pip install 'proof-of-learning[fast]'"
            ) from exc
        return ArkworksBackend()
    raise BackendUnavailableError(f"unknown zk backend {name!r}: expected pyecc, arkworks or auto")


def get_backend(name: str | None = None) -> Backend:
    """Return a backend by name, or by ``$POL_ZK_BACKEND``, or the fastest available."""
    choice = (name or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if choice == "auto":
        choice = available_backends()[-1]
    return _make(choice)


__all__ = ["Backend", "CURVE_ORDER", "BACKEND_ENV", "available_backends", "get_backend"]
