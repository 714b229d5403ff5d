"""SHA-256 Merkle tree over chunk commitments, with domain-separated leaves and nodes.

    leaf  = SHA-256(0x00 || "pol-zk/merkle/leaf" || u64(index) || data)
    node  = SHA-256(0x01 || "pol-zk/merkle/node" || left || right)
    root  = SHA-256(0x02 || "pol-zk/merkle/root" || u64(count) || top)

An odd node at the end of a level is promoted unchanged. Leaves carry their index and the root
carries the leaf count, so a path cannot be replayed at another position or tree size.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence


def leaf_hash(index: int, data: bytes) -> bytes:
    return hashlib.sha256(b"\x00pol-zk/merkle/leaf" + struct.pack(">Q", index) + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01pol-zk/merkle/node" + left + right).digest()


def _finish(count: int, top: bytes) -> bytes:
    return hashlib.sha256(b"\x02pol-zk/merkle/root" + struct.pack(">Q", count) + top).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    level = [leaf_hash(i, d) for i, d in enumerate(leaves)]
    levels = [level]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over the ordered leaves (at least one)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    return _finish(len(leaves), _levels(leaves)[-1][0])


def merkle_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from the leaf up (promoted levels contribute nothing)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range 0..{len(leaves) - 1}")
    path = []
    for level in _levels(leaves)[:-1]:
        sib = index ^ 1
        if sib < len(level):
            path.append(level[sib])
        index //= 2
    return path


def verify_path(root: bytes, count: int, index: int, data: bytes, path: Sequence[bytes]) -> bool:
    """True if ``data`` is leaf ``index`` of the ``count``-leaf tree with this root."""
    if not 0 <= index < count:
        return False
    h = leaf_hash(index, data)
    width, i, k = count, index, 0
    while width > 1:
        sib = i ^ 1
        if sib < width:
            if k >= len(path):
                return False
            h = _node(path[k], h) if i % 2 else _node(h, path[k])
            k += 1
        i //= 2
        width = (width + 1) // 2
    return k == len(path) and _finish(count, h) == root


__all__ = ["merkle_root", "merkle_path", "verify_path", "leaf_hash"]
