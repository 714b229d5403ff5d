"""Which bytes carry meaning: compare what a reader sees in two files.

A proof is read only through its sanitised copy (:mod:`pol.untrusted_h5`): the tree of groups,
datasets (dtype, shape, values) and scalar attributes. Two files with the same sanitised tree are
the same proof to every check, whatever their bytes. A mutation that leaves the tree unchanged
landed in bytes nothing reads (HDF5 free space, padding, unused header fields, chunk layout, ...;
docs/FORMAT.md, Bytes nothing reads). A mutation that changes the tree must fail a check, except
in the fields that are documented as unsigned and informational (:data:`UNSIGNED`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

# Values a proof carries without a signature, documented as such (docs/FORMAT.md).
UNSIGNED = {"/final@finished_at"}
SAME = "same content (bytes nothing reads)"
SAME_DECODED = "coded checkpoint streams that decode to the same tensors (zstd framing bits nothing reads)"
UNSIGNED_ONLY = "only unsigned informational fields differ (/final finished_at)"
METADATA_ONLY = "only the unsigned safetensors metadata differs"


def proof_tree_diff(a: Path, b: Path) -> list[str]:
    """Paths (``/group/dataset`` or ``/path@attr``) whose sanitised content differs."""
    from pol.untrusted_h5 import UntrustedFile

    with UntrustedFile(a) as fa, UntrustedFile(b) as fb:
        return _diff(fa.root, fb.root, "")


def _diff(x: Any, y: Any, path: str) -> list[str]:
    where = path or "/"
    out: list[str] = []
    if x.kind != y.kind:
        return [where]
    for name in sorted(set(x.attrs) | set(y.attrs)):
        if x.attrs.get(name, _MISSING) != y.attrs.get(name, _MISSING) or type(x.attrs.get(name)) is not type(y.attrs.get(name)):
            out.append(f"{where}@{name}")
    if x.is_group:
        for name in sorted(set(x.members) | set(y.members)):
            sub = f"{path}/{name}"
            if name not in x.members or name not in y.members:
                out.append(sub)
            else:
                out.extend(_diff(x.members[name], y.members[name], sub))
        return out
    if x.dtype != y.dtype or x.shape != y.shape or np.asarray(x.read()).tobytes() != np.asarray(y.read()).tobytes():
        out.append(where)
    return out


_MISSING = object()


_CODED = re.compile(r"/checkpoints/([0-9]{6})/(index|deltas|plain)")


def explain_proof_change(original: Path, mutated: Path) -> str | None:
    """Why a verifier may accept ``mutated`` (an explanation), or None when meaning changed."""
    diff = proof_tree_diff(original, mutated)
    if not diff:
        return SAME
    coded = {int(m.group(1)) for d in diff if (m := _CODED.fullmatch(d))}
    rest = {d for d in diff if not _CODED.fullmatch(d)}
    if coded and not rest - UNSIGNED and _same_checkpoints(original, mutated, coded):
        return SAME_DECODED
    if set(diff) <= UNSIGNED:
        return UNSIGNED_ONLY
    return None


def _same_checkpoints(a: Path, b: Path, indices: set[int]) -> bool:
    """Do checkpoints ``indices`` decode to the same tensors in both proofs?"""
    from pol.proof_file import ProofReader

    with ProofReader(a) as ra, ProofReader(b) as rb:
        for i in sorted(indices):
            x, y = ra.checkpoint_state(i), rb.checkpoint_state(i)
            if x.keys() != y.keys() or any(x[k].dtype != y[k].dtype or x[k].shape != y[k].shape
                                           or x[k].tobytes() != y[k].tobytes() for k in x):
                return False
    return True


def explain_weights_change(original: Path, mutated: Path) -> str | None:
    from pol.weights_io import load_weights

    a, b = load_weights(original), load_weights(mutated)
    if a.digest() != b.digest() or a.ties != b.ties:
        return None
    return SAME if a.metadata == b.metadata else METADATA_ONLY


def explain_key_change(original: Path, mutated: Path) -> str | None:
    from pol.keys import load_verify_key

    return SAME if bytes(load_verify_key(original)) == bytes(load_verify_key(mutated)) else None
