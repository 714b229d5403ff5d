"""Lossless checkpoint coding.

``raw``: each tensor is an ordinary HDF5 dataset (gzip + shuffle filters, built into every
HDF5), readable by plain h5py with no help from this package.

``delta-zstd`` (default): one checkpoint is three uint8 datasets, ``index`` (zstd JSON), ``deltas``
and ``plain``. Every float32 tensor that has a *base* is coded as the difference of bit
patterns ``zigzag(int32(tensor) - int32(base))`` (mod 2^32); the differences of all tensors are
concatenated, bit-shuffled (bit plane 31 of every value, then plane 30, ...) and zstd-coded as
one stream: consecutive SGD checkpoints share sign, exponent and high mantissa bits, so the
high planes are almost all zero. The base of a tensor is the same tensor in the previous
stored checkpoint, except SGD momentum buffers, whose base is the average momentum implied by
the weight change, ``(W_prev - W) / sum(lr)`` over the steps in between (float32, computed
identically by writer and reader). Everything else (keyframes, integers, RNG state) goes
into the ``plain`` stream, zstd-coded. Plain h5py opens the file; decoding needs ``zstandard``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.errors import ProofFormatError
from pol.hashing import OPTIMIZER_STATE, contiguous
from pol.smallfiles import parse_json
from pol.state import MODEL, State

CODECS = ("raw", "delta-zstd")
DEFAULT_CODEC = "delta-zstd"
_ZSTD_LEVEL = 3
_MAX_INDEX_BYTES = 1 << 26
_MOMENTUM = "/momentum_buffer"


@dataclass(frozen=True)
class Encoded:
    index: bytes
    deltas: bytes
    plain: bytes


def _bitshuffle(values: np.ndarray) -> bytes:
    """uint32 values -> 32 packed bit planes, most significant first (length padded to 8)."""
    pad = (-len(values)) % 8
    v = np.concatenate([values, np.zeros(pad, np.uint32)]) if pad else values
    bits = np.unpackbits(v.astype("<u4").view(np.uint8).reshape(-1, 4)[:, ::-1], axis=1)
    return np.packbits(bits.T, axis=1).tobytes()


def _unbitshuffle(data: bytes, count: int) -> np.ndarray:
    padded = count + (-count) % 8
    planes = np.frombuffer(data, np.uint8).reshape(32, padded // 8)
    bits = np.unpackbits(planes, axis=1)[:, :padded]
    return np.packbits(bits.T, axis=1)[:, ::-1].copy().view("<u4").reshape(-1)[:count].astype(np.uint32)


def _zigzag(d: np.ndarray) -> np.ndarray:
    d = d.astype(np.int32)
    return ((d.astype(np.uint32) << np.uint32(1)) ^ (d >> 31).astype(np.uint32)).astype(np.uint32)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return ((z >> np.uint32(1)) ^ (np.uint32(0) - (z & np.uint32(1)))).astype(np.uint32)


def _base(name: str, shape: tuple[int, ...], previous: Mapping[str, np.ndarray] | None,
          current: Mapping[str, np.ndarray], lr_sum: float) -> np.ndarray | None:
    if previous is None:
        return None
    if name.startswith(OPTIMIZER_STATE) and name.endswith(_MOMENTUM) and lr_sum > 0:
        weight = MODEL + name[len(OPTIMIZER_STATE):-len(_MOMENTUM)]
        if weight in previous and weight in current and previous[weight].shape == tuple(shape) \
                and previous[weight].dtype == np.float32 and current[weight].dtype == np.float32:
            with np.errstate(all="ignore"):
                return ((previous[weight] - current[weight]) / np.float32(lr_sum)).astype(np.float32)
    base = previous.get(name)
    if base is None or base.shape != tuple(shape) or base.dtype != np.float32:
        return None
    return base


def encode_checkpoint(state: Mapping[str, np.ndarray], previous: Mapping[str, np.ndarray] | None,
                      lr_sum: float = 0.0) -> Encoded:
    import zstandard

    entries: list[dict[str, Any]] = []
    deltas: list[np.ndarray] = []
    plain: list[bytes] = []
    for name in sorted(state):  # "model/" sorts before "optim/": weights decode before momentum
        arr = contiguous(state[name])
        base = _base(name, arr.shape, previous, state, lr_sum) if arr.dtype == np.float32 else None
        entry = {"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "delta": base is not None}
        if base is not None:
            d = arr.reshape(-1).view(np.int32).astype(np.int64) - base.reshape(-1).view(np.int32)
            deltas.append(_zigzag(d))
        else:
            plain.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        entries.append(entry)
    stream = np.concatenate(deltas) if deltas else np.zeros(0, np.uint32)
    cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    index = json.dumps({"entries": entries, "lr_sum": lr_sum, "count": int(stream.size)}).encode()
    return Encoded(cctx.compress(index), cctx.compress(_bitshuffle(stream)), cctx.compress(b"".join(plain)))


def _decompress(blob: bytes, size: int | None) -> bytes:
    """zstd-decode ``blob``: exactly ``size`` bytes, or (``None``) at most :data:`_MAX_INDEX_BYTES`."""
    import zstandard

    limit = _MAX_INDEX_BYTES if size is None else size
    try:
        declared = zstandard.frame_content_size(blob)  # the frame header's size, checked before decoding
        if not 0 <= declared <= limit:
            raise ProofFormatError(f"compressed stream declares {declared} bytes, more than the {limit} expected")
        stream = zstandard.ZstdDecompressor().decompressobj()
        raw = stream.decompress(blob)
    except zstandard.ZstdError as exc:
        raise ProofFormatError(f"corrupt compressed checkpoint: {exc}") from None
    if not stream.eof or stream.unused_data:  # exactly one frame: no bytes that nothing reads
        raise ProofFormatError("compressed stream is truncated or followed by other bytes")
    if len(raw) != declared or (size is not None and len(raw) != size):
        raise ProofFormatError(f"compressed stream holds {len(raw)} bytes, the index promises {size}")
    return raw


def decode_checkpoint(encoded: Encoded, previous: Mapping[str, np.ndarray] | None,
                      max_elements: int = 1 << 31) -> State:
    try:
        index = parse_json(_decompress(encoded.index, None), "checkpoint index", ProofFormatError)
        entries = index["entries"]
        lr_sum = float(index["lr_sum"])
        count = int(index["count"])
        specs = [(str(e["name"]), np.dtype(str(e["dtype"])), tuple(int(s) for s in e["shape"]), bool(e["delta"]))
                 for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProofFormatError(f"malformed checkpoint index: {exc}") from None
    total, plain_bytes = 0, 0
    for name, dtype, shape, delta in specs:
        n = int(np.prod(shape, dtype=np.int64))
        if dtype.kind not in "fiub" or any(s < 0 for s in shape) or n > max_elements:
            raise ProofFormatError(f"tensor {name} has an unsupported dtype or shape")
        if delta and dtype != np.float32:
            raise ProofFormatError(f"tensor {name}: only float32 tensors are delta-coded")
        total += n if delta else 0
        plain_bytes += 0 if delta else n * dtype.itemsize
    if total != count or count > max_elements:
        raise ProofFormatError("checkpoint index counts do not add up")
    # Both streams are decoded even when empty: every stored byte is read and checked.
    shuffled = _decompress(encoded.deltas, 4 * (count + (-count) % 8))
    stream = _unbitshuffle(shuffled, count) if count else np.zeros(0, np.uint32)
    plain = _decompress(encoded.plain, plain_bytes)
    state: State = {}
    d_off = p_off = 0
    for name, dtype, shape, delta in specs:
        n = int(np.prod(shape, dtype=np.int64))
        if delta:
            base = _base(name, shape, previous, state, lr_sum)
            if base is None:
                raise ProofFormatError(f"tensor {name} is a delta but its base is missing or differs")
            bits = _unzigzag(stream[d_off:d_off + n]).astype(np.int64) + base.reshape(-1).view(np.int32)
            state[name] = (bits & 0xFFFFFFFF).astype(np.uint32).view(np.float32).reshape(shape)
            d_off += n
        elif n == 0:
            state[name] = np.zeros(shape, dtype)
        else:
            state[name] = np.frombuffer(plain, dtype.newbyteorder("<"), count=n, offset=p_off).astype(dtype).reshape(shape)
            p_off += n * dtype.itemsize
    return state
