"""Signed message headers: what travels with every tensor between two nodes.

A header is a fixed-size little-endian record (:data:`HEADER_SIZE` bytes)::

    "PSM1" | plan_digest[32] | u64 step | u32 micro_batch | u8 direction | u16 sender_stage
    | u16 sender_node | u16 receiver_node | tensor_digest[32] | u8 dtype | u8 ndim | u32 shape[6]
    | signature[64]

``direction`` is 0 for an activation sent forward (stage s -> s+1) and 1 for a gradient sent
backward (stage s -> s-1). ``tensor_digest = SHA-256("pol-split-tensor-v1" || record("t", tensor))``
with the canonical tensor record of :mod:`pol.hashing`. The signature is Ed25519 by the sender's
node key over ``"pol-split-msg-sig-v1" || the header without its signature``. An unsigned header
(the bare pipeline, for benchmarks) has an all-zero digest and signature.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.errors import PolError
from pol.hashing import update_with_tensor

FORWARD, BACKWARD = 0, 1
DIRECTIONS = {FORWARD: "activation", BACKWARD: "gradient"}
MAX_DIMS = 6
_MAGIC = b"PSM1"
_FIELDS = struct.Struct("<4s32sQIBHHH32sBB6I")
SIGNED_SIZE = _FIELDS.size
HEADER_SIZE = SIGNED_SIZE + 64
SIGNATURE_DOMAIN = b"pol-split-msg-sig-v1"
_DTYPES = ("float32", "float64", "float16", "int64", "int32", "uint8")
ZERO_DIGEST = bytes(32)


class MessageRejected(PolError):
    """A received message failed its checks; the run stops and names the sender."""


def tensor_digest(array: np.ndarray) -> bytes:
    h = hashlib.sha256(b"pol-split-tensor-v1")
    # dtype.name is the canonical name for native numeric dtypes, and much cheaper to get
    update_with_tensor(h, "t", array, array.dtype.name if array.dtype.isnative and array.dtype.kind in "fiu" else None)
    return h.digest()


def torch_tensor_digest(tensor: Any) -> bytes:
    """Digest of a torch tensor (moved to CPU if needed; bfloat16 is not carried)."""
    return tensor_digest(tensor.detach().cpu().numpy())


@dataclass(frozen=True)
class Header:
    plan_digest: bytes
    step: int
    micro_batch: int
    direction: int
    sender_stage: int
    sender_node: int
    receiver_node: int
    digest: bytes
    dtype: str
    shape: tuple[int, ...]
    signature: bytes = bytes(64)

    @property
    def receiver_stage(self) -> int:
        return self.sender_stage + (1 if self.direction == FORWARD else -1)

    @property
    def key(self) -> tuple[int, int, int, int]:
        """What identifies a message in a run: (step, micro-batch, direction, sender stage)."""
        return (self.step, self.micro_batch, self.direction, self.sender_stage)

    @functools.cached_property
    def _signed(self) -> bytes:
        shape = list(self.shape) + [0] * (MAX_DIMS - len(self.shape))
        return _FIELDS.pack(_MAGIC, self.plan_digest, self.step, self.micro_batch, self.direction,
                            self.sender_stage, self.sender_node, self.receiver_node, self.digest,
                            _DTYPES.index(self.dtype), len(self.shape), *shape)

    def signed_bytes(self) -> bytes:
        return self._signed

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.signature

    def describe(self) -> str:
        return (f"{DIRECTIONS.get(self.direction, '?')} from stage {self.sender_stage} (node {self.sender_node}) "
                f"at step {self.step}, micro-batch {self.micro_batch}")

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Header":
        """Parse an untrusted header; raises ValueError when it is not one."""
        if len(raw) != HEADER_SIZE:
            raise ValueError(f"a message header has {HEADER_SIZE} bytes, found {len(raw)}")
        (magic, plan_digest, step, micro, direction, s_stage, s_node, r_node, digest, dtype, ndim,
         *shape) = _FIELDS.unpack(raw[:SIGNED_SIZE])
        if magic != _MAGIC:
            raise ValueError("not a pol-split message header (bad magic)")
        if direction not in DIRECTIONS or dtype >= len(_DTYPES) or ndim > MAX_DIMS or any(shape[ndim:]):
            raise ValueError("malformed message header (direction, dtype or shape)")
        header = cls(plan_digest, step, micro, direction, s_stage, s_node, r_node, digest, _DTYPES[dtype],
                     tuple(shape[:ndim]), raw[SIGNED_SIZE:])
        header.__dict__["_signed"] = bytes(raw[:SIGNED_SIZE])  # packing is a bijection: the same bytes
        return header


def dtype_supported(name: str) -> bool:
    return name in _DTYPES


def sign_header(header: Header, key: Any) -> Header:
    """The header with the sender's Ed25519 signature (``key``: a nacl SigningKey)."""
    from pol.keys import sign

    signed = header.signed_bytes()
    out = Header(header.plan_digest, header.step, header.micro_batch, header.direction, header.sender_stage,
                 header.sender_node, header.receiver_node, header.digest, header.dtype, header.shape,
                 sign(key, SIGNATURE_DOMAIN, signed))
    out.__dict__["_signed"] = signed
    return out


def signature_valid(header: Header, public_key: Any) -> bool:
    """``public_key``: raw 32 bytes or a cached nacl VerifyKey (faster on the message path)."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    vk = public_key if isinstance(public_key, VerifyKey) else VerifyKey(bytes(public_key))
    try:
        vk.verify(SIGNATURE_DOMAIN + header.signed_bytes(), header.signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
