"""Binary Merkle tree over leaf digests (RFC 6962 style domain separation).

leaf = H(0x00 || d), node = H(0x01 || left || right); an odd node is promoted unchanged.
The empty tree's root is H(0x02). Proofs list (sibling, sibling_is_left) pairs bottom-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _h(prefix: bytes, *parts: bytes) -> bytes:
    h = hashlib.sha256(prefix)
    for p in parts:
        h.update(p)
    return h.digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    level = [_h(b"\x00", leaf) for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [_h(b"\x01", level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        levels.append(level)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return _h(b"\x02")
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[tuple[bytes, bool]]:
    """Siblings from leaf ``index`` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range 0..{len(leaves) - 1}")
    path: list[tuple[bytes, bool]] = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append((level[sibling], sibling < index))
        index //= 2
    return path


def verify_merkle_proof(leaf: bytes, proof: Sequence[tuple[bytes, bool]], root: bytes) -> bool:
    node = _h(b"\x00", leaf)
    for sibling, sibling_is_left in proof:
        node = _h(b"\x01", sibling, node) if sibling_is_left else _h(b"\x01", node, sibling)
    return node == root
