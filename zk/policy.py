"""What the verifier pins before it does any work on a ``/zk`` section: :class:`ZkPolicy`.

The prover chooses nothing that decides what a commitment means or what verifying it costs:
the fixed-point scale and bit width (``--scale-bits 0`` would commit every weight as 0,
``--bits 2`` would clip almost all of them), the generator domain-separation tag and the chunk
size (each new pair makes the verifier derive a fresh generator set by hash-to-curve, about
3 ms a point), and how many commitments it is willing to decode. A section whose parameters
differ from the policy is rejected before any generator is derived or any point decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zk.generators import DEFAULT_DST
from zk.pedersen import DEFAULT_CHUNK_SIZE, Params
from zk.quantize import DEFAULT_BITS, DEFAULT_SCALE_BITS


@dataclass(frozen=True)
class ZkPolicy:
    """The verifier's pinned zk parameters and work limits (defaults: what ``pol zk commit`` writes)."""

    scale_bits: int = DEFAULT_SCALE_BITS
    bits: int = DEFAULT_BITS
    dst: bytes = DEFAULT_DST
    #: Largest chunk size (= generator set size) the verifier derives or loads.
    max_chunk_size: int = DEFAULT_CHUNK_SIZE
    #: Most values a checkpoint may clip before ``zk.quantisation`` fails (0: none).
    max_clipped: int = 0
    #: Most chunk commitments the verifier decodes (curve and subgroup check each).
    max_commitments: int = 1 << 20

    def __post_init__(self) -> None:
        Params(min(self.max_chunk_size, 1 << 24), self.scale_bits, self.bits, self.dst)  # validates the ranges
        if self.max_chunk_size < 1 or self.max_clipped < 0 or self.max_commitments < 1:
            raise ValueError("max_chunk_size and max_commitments must be positive, max_clipped non-negative")

    def problems(self, params: Params) -> list[str]:
        """What in ``params`` this policy does not accept (empty: accepted)."""
        out = []
        if params.scale_bits != self.scale_bits:
            out.append(f"scale 2^-{params.scale_bits} (pinned: 2^-{self.scale_bits})")
        if params.bits != self.bits:
            out.append(f"{params.bits}-bit values (pinned: {self.bits})")
        if params.dst != self.dst:
            out.append(f"generator DST {params.dst[:40]!r} (pinned: the default)")
        if params.chunk_size > self.max_chunk_size:
            out.append(f"chunk size {params.chunk_size} (at most {self.max_chunk_size})")
        return out

    def describe(self) -> Mapping[str, object]:
        return {"scale_bits": self.scale_bits, "bits": self.bits, "max_chunk_size": self.max_chunk_size,
                "dst": self.dst.decode("ascii", "replace"), "max_clipped": self.max_clipped,
                "max_commitments": self.max_commitments}


__all__ = ["ZkPolicy"]
