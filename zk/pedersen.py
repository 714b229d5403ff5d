"""Chunked Pedersen vector commitments to quantised tensors.

A vector of small integers ``v`` is cut into chunks of ``chunk_size`` values; chunk ``j`` is
committed as ``C_j = sum_i v[j*m + i] * G_i + b_j * H`` with one fresh secret blinding ``b_j``
per chunk and one generator set shared by all chunks (and all checkpoints). The vector's
commitment is the tuple of compressed ``C_j`` plus a Merkle root over them, so a single chunk
can be opened without revealing the others.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from zk.backend import CURVE_ORDER, Backend, get_backend
from zk.generators import DEFAULT_DST, GeneratorSet, genset_id
from zk.merkle import merkle_root
from zk.quantize import DEFAULT_BITS, DEFAULT_SCALE_BITS, Layout, Quantizer, flatten

#: Default number of values per chunk (and size of the generator set).
DEFAULT_CHUNK_SIZE = 4096
_MAX_ABS_VALUE = 1 << 40


@dataclass(frozen=True)
class Params:
    """Everything that must be equal between prover and verifier (and across checkpoints)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    scale_bits: int = DEFAULT_SCALE_BITS
    bits: int = DEFAULT_BITS
    dst: bytes = DEFAULT_DST

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= 1 << 24:
            raise ValueError(f"chunk_size must be in 1..2^24, got {self.chunk_size}")
        Quantizer(self.scale_bits, self.bits)  # validates

    @property
    def quantizer(self) -> Quantizer:
        return Quantizer(self.scale_bits, self.bits)

    @property
    def genset_id(self) -> bytes:
        return genset_id(self.chunk_size, self.dst)


@dataclass(frozen=True)
class VectorCommitment:
    """Compressed chunk commitments (48 bytes each) to a vector of ``length`` integers."""

    chunks: tuple[bytes, ...]
    length: int
    genset_id: bytes

    def __post_init__(self) -> None:
        if not self.chunks or any(len(c) != 48 for c in self.chunks):
            raise ValueError("a vector commitment has at least one chunk of 48 bytes")

    @cached_property
    def root(self) -> bytes:
        return merkle_root(self.chunks)


def random_scalar() -> int:
    """A uniform nonzero scalar mod r from the OS CSPRNG."""
    return secrets.randbelow(CURVE_ORDER - 1) + 1


@dataclass
class Committer:
    """Commits vectors under one :class:`Params` and backend (generators loaded on first use)."""

    params: Params = field(default_factory=Params)
    backend: Backend = field(default_factory=get_backend)
    cache_dir: str | os.PathLike[str] | None = None
    _gens: GeneratorSet | None = field(default=None, repr=False)

    @property
    def generators(self) -> GeneratorSet:
        if self._gens is None:
            self._gens = GeneratorSet.load(self.params.chunk_size, self.params.dst, self.backend, self.cache_dir)
        return self._gens

    def n_chunks(self, length: int) -> int:
        return max(1, -(-length // self.params.chunk_size))

    def as_rows(self, values: np.ndarray) -> np.ndarray:
        """The vector as (chunks, chunk_size) int64, zero-padded."""
        v = np.asarray(values)
        if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
            raise ValueError("values must be a 1-D integer array")
        m = self.params.chunk_size
        rows = np.zeros((self.n_chunks(len(v)), m), dtype=np.int64)
        rows.ravel()[: len(v)] = v
        return rows

    def commit_values(
        self, values: np.ndarray, blindings: Sequence[int] | None = None
    ) -> tuple[VectorCommitment, list[int]]:
        """Commit a 1-D integer vector; returns the commitment and the per-chunk blindings."""
        rows = self.as_rows(values)
        if rows.size and int(np.abs(rows).max()) >= _MAX_ABS_VALUE:
            raise ValueError("committed integers must be below 2^40 in magnitude")
        if blindings is None:
            blindings = [random_scalar() for _ in range(len(rows))]
        blindings = [int(b) % CURVE_ORDER for b in blindings]
        if len(blindings) != len(rows):
            raise ValueError(f"need {len(rows)} blindings, got {len(blindings)}")
        pts = self.backend.commit_rows(self.generators.prepared, rows, blindings)
        chunks = tuple(self.backend.encode(p) for p in pts)
        return VectorCommitment(chunks, int(len(np.asarray(values))), self.params.genset_id), blindings

    def commit_tensors(
        self, tensors: Mapping[str, np.ndarray], blindings: Sequence[int] | None = None
    ) -> tuple[Layout, VectorCommitment, list[int], np.ndarray, int]:
        """Quantise, flatten (name order) and commit: ``(layout, commitment, blindings, values, clipped)``."""
        layout, vec, clipped = flatten(tensors, self.params.quantizer)
        com, bl = self.commit_values(vec, blindings)
        return layout, com, bl, vec, clipped

    def commit_chunk(self, values: np.ndarray, blinding: int) -> bytes:
        """The compressed commitment of one chunk (``len(values) <= chunk_size``)."""
        row = np.zeros((1, self.params.chunk_size), dtype=np.int64)
        v = np.asarray(values, dtype=np.int64)
        if v.ndim != 1 or len(v) > self.params.chunk_size:
            raise ValueError("a chunk holds at most chunk_size values")
        row[0, : len(v)] = v
        return self.backend.encode(self.backend.commit_rows(self.generators.prepared, row, [blinding % CURVE_ORDER])[0])


__all__ = ["DEFAULT_CHUNK_SIZE", "Params", "VectorCommitment", "Committer", "random_scalar"]
