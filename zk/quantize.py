"""Fixed-point quantisation of float tensors into the small integers that get committed.

A value ``x`` becomes ``q = clip(round_half_even(x * 2^scale_bits), -2^(bits-1), 2^(bits-1)-1)``.
The commitment binds ``q``, not ``x``: quantisation is lossy, and values outside
``[-2^(bits-1-scale_bits), 2^(bits-1-scale_bits))`` are clipped (the count is reported). The
scale and bit width are fixed for a run, so integer relations between checkpoints
(``q(W_t+k) = q(W_t) + Δ``) hold exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Default fixed-point scale: 2^-12 (values are stored as multiples of 1/4096).
DEFAULT_SCALE_BITS = 12
#: Default bit width of a committed value (signed).
DEFAULT_BITS = 16
#: Most values a layout may describe (2^40, a trillion parameters); more is refused.
MAX_VALUES = 1 << 40


@dataclass(frozen=True)
class Quantizer:
    scale_bits: int = DEFAULT_SCALE_BITS
    bits: int = DEFAULT_BITS

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 32:
            raise ValueError(f"bit width must be in 2..32, got {self.bits}")
        if not 0 <= self.scale_bits <= 40:
            raise ValueError(f"scale_bits must be in 0..40, got {self.scale_bits}")

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Return ``(int64 values, number clipped)``. NaN is refused (ValueError)."""
        arr = np.asarray(x, dtype=np.float64).ravel()
        if np.isnan(arr).any():
            raise ValueError("cannot quantise NaN")
        scaled = np.rint(np.ldexp(arr, self.scale_bits))
        clipped = int(np.count_nonzero((scaled < self.lo) | (scaled > self.hi)))
        return np.clip(scaled, self.lo, self.hi).astype(np.int64), clipped

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return np.ldexp(np.asarray(q, dtype=np.float64), -self.scale_bits)


@dataclass(frozen=True)
class Layout:
    """Where each named tensor sits in the flat committed vector (sorted by name)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        # Python integers: numpy's int64 product would wrap around silently.
        if sum(math.prod(s) for s in self.shapes) > MAX_VALUES:
            raise ValueError(f"layout describes more than {MAX_VALUES} values")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for n in self.sizes:
            out.append(acc)
            acc += n
        return tuple(out)

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray]) -> Layout:
        names = tuple(sorted(tensors))
        return cls(names, tuple(tuple(int(d) for d in np.shape(tensors[n])) for n in names))


def flatten(tensors: Mapping[str, np.ndarray], quantizer: Quantizer) -> tuple[Layout, np.ndarray, int]:
    """Quantise and concatenate tensors in name order: ``(layout, int64 vector, clipped)``."""
    layout = Layout.of(tensors)
    parts, clipped = [], 0
    for n in layout.names:
        q, c = quantizer.quantize(tensors[n])
        parts.append(q)
        clipped += c
    vec = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return layout, vec, clipped


__all__ = ["DEFAULT_SCALE_BITS", "DEFAULT_BITS", "MAX_VALUES", "Quantizer", "Layout", "flatten"]
