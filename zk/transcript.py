"""Fiat-Shamir transcript (SHA-256, length-framed, domain-separated).

Every message is absorbed as ``u32(len label) || label || u64(len data) || data`` into a
running SHA-256 that starts from ``"pol-zk/transcript/v1"`` and the protocol name. A challenge
is ``SHA-256(state || "challenge" || label || counter)`` stretched to 64 bytes and reduced mod
r (bias below 2^-128), and is itself absorbed, so later challenges depend on it. Proofs bind
the run id, checkpoint index and generator-set id by absorbing them first.
"""

from __future__ import annotations

import hashlib
import struct

from zk.backend import CURVE_ORDER

_INIT = b"pol-zk/transcript/v1"


class Transcript:
    def __init__(self, protocol: bytes) -> None:
        self._h = hashlib.sha256(_INIT)
        self.append(b"protocol", protocol)

    def append(self, label: bytes, data: bytes) -> None:
        self._h.update(struct.pack(">I", len(label)) + label + struct.pack(">Q", len(data)) + data)

    def append_u64(self, label: bytes, value: int) -> None:
        self.append(label, struct.pack(">Q", value))

    def _squeeze(self, label: bytes, nbytes: int) -> bytes:
        state = self._h.copy().digest()
        out = b"".join(
            hashlib.sha256(state + b"challenge" + struct.pack(">I", len(label)) + label + struct.pack(">I", i)).digest()
            for i in range((nbytes + 31) // 32)
        )[:nbytes]
        self.append(b"challenge:" + label, out)
        return out

    def challenge_scalar(self, label: bytes) -> int:
        """A uniform nonzero scalar mod r."""
        while True:
            e = int.from_bytes(self._squeeze(label, 64), "big") % CURVE_ORDER
            if e:
                return e

    def challenge_int(self, label: bytes, bits: int = 128) -> int:
        """A uniform nonzero integer below 2^bits (batching coefficients)."""
        while True:
            v = int.from_bytes(self._squeeze(label, (bits + 7) // 8), "big") >> ((8 - bits % 8) % 8)
            if v:
                return v


__all__ = ["Transcript"]
