"""Lossless checkpoint coding.

``raw``: each tensor is an ordinary HDF5 dataset (gzip + shuffle filters, built into every
HDF5), readable by plain h5py with no help from this package.

``xor-zstd``: each tensor is a 1-D uint8 dataset holding
``zstd(byte_shuffle(bits(tensor) XOR bits(base tensor)))``, where the base is the same tensor
in an earlier checkpoint (or zeros for a keyframe). Consecutive SGD checkpoints share sign,
exponent and high mantissa bits, so the XOR is mostly zero bytes in the high planes.
Datasets stay plain uint8 arrays: any h5py opens the file; decoding needs ``zstandard``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pol.hashing import contiguous

from pol.errors import ProofFormatError

CODECS = ("raw", "xor-zstd")
_ZSTD_LEVEL = 3


def _bits(array: np.ndarray) -> np.ndarray:
    a = contiguous(array)
    return a.reshape(-1).view(np.uint8).reshape(-1, a.dtype.itemsize) if a.size else np.empty((0, a.dtype.itemsize), np.uint8)


def encode_tensor(array: np.ndarray, base: np.ndarray | None) -> bytes:
    import zstandard

    planes = _bits(array)
    if base is not None:
        planes = planes ^ _bits(base)
    shuffled = contiguous(planes.T)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(shuffled.tobytes())


def decode_tensor(blob: bytes, dtype: np.dtype, shape: tuple[int, ...], base: np.ndarray | None) -> np.ndarray:
    import zstandard

    count = int(np.prod(shape, dtype=np.int64))
    itemsize = np.dtype(dtype).itemsize
    try:
        raw = zstandard.ZstdDecompressor().decompress(blob, max_output_size=count * itemsize)
    except zstandard.ZstdError as exc:
        raise ProofFormatError(f"corrupt compressed tensor: {exc}") from None
    if len(raw) != count * itemsize:
        raise ProofFormatError(f"compressed tensor holds {len(raw)} bytes, expected {count * itemsize}")
    planes = np.frombuffer(raw, np.uint8).reshape(itemsize, count).T
    if base is not None:
        if base.shape != tuple(shape) or base.dtype != dtype:
            raise ProofFormatError("delta base does not match the tensor's dtype and shape")
        planes = planes ^ _bits(base)
    return contiguous(planes).view(dtype).reshape(shape)


def delta_base(name: str, dtype: np.dtype, shape: tuple[int, ...],
               previous: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
    """The base a tensor is XOR-ed against: the same name, dtype and shape one checkpoint back."""
    if previous is None:
        return None
    base = previous.get(name)
    if base is None or base.shape != tuple(shape) or base.dtype != dtype:
        return None
    return base
