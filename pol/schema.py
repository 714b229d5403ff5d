"""Declarative layouts of the files this project reads, checked before anything else is read.

A layout says exactly which members a group has (required, optional, or named by a pattern),
which attributes (name and type), and for each dataset its dtype and dimensions. Anything else is
refused with :class:`~pol.errors.ProofFormatError`: unknown members and attributes, wrong node
types, wrong dtypes or shapes. The tree it checks is the sanitised view of
:mod:`pol.untrusted_h5` (no links, no virtual datasets, no external storage, plain numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pol.errors import ProofFormatError
from pol.untrusted_h5 import Node


@dataclass(frozen=True)
class Attr:
    """A scalar attribute: ``kind`` is bool, int, float or str; ``check`` an extra predicate."""

    kind: type
    required: bool = True
    check: Callable[[Any], bool] | None = None
    what: str = ""

    def validate(self, value: Any, where: str) -> None:
        ok = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (self.check is not None and not self.check(value)):
            expected = self.what or self.kind.__name__
            raise ProofFormatError(f"{where} must be {expected}, found {str(value)[:40]!r}")


@dataclass(frozen=True)
class Dataset:
    """``kinds``: allowed numpy dtype kinds (or exact ``dtype``); ``shape``: per dimension an int
    (exact), None (any) or a callable(value) -> bool."""

    dtype: str | None = None
    kinds: str = ""
    shape: tuple[Any, ...] | None = None
    ndim: int | None = None
    attrs: Mapping[str, Attr] = field(default_factory=dict)

    def validate(self, node: Node, where: str) -> None:
        if node.is_group:
            raise ProofFormatError(f"{where} must be a dataset, found a group")
        assert node.dtype is not None
        if self.dtype is not None and node.dtype != np.dtype(self.dtype):
            raise ProofFormatError(f"{where} must have dtype {self.dtype}, found {node.dtype}")
        if self.kinds and node.dtype.kind not in self.kinds:
            raise ProofFormatError(f"{where} has dtype {node.dtype}, expected kind {self.kinds!r}")
        ndim = len(self.shape) if self.shape is not None else self.ndim
        if ndim is not None and len(node.shape) != ndim:
            raise ProofFormatError(f"{where} must have {ndim} dimension(s), found shape {node.shape}")
        for i, want in enumerate(self.shape or ()):
            got = node.shape[i]
            if (isinstance(want, int) and got != want) or (callable(want) and not want(got)):
                raise ProofFormatError(f"{where} has shape {node.shape}, which this layout does not allow")
        _check_attrs(node, self.attrs, where)


def Bytes(exact: int | None = None, limit: int = 1 << 20) -> Dataset:  # noqa: N802 (reads like a type)
    """A 1-D uint8 byte string."""
    size: Any = exact if exact is not None else (lambda n: n <= limit)
    return Dataset(dtype="uint8", shape=(size,))


@dataclass(frozen=True)
class Group:
    """``members``: name -> layout; names in ``optional`` may be absent; ``pattern`` + ``each``
    describe members named by a regular expression; ``any_tree`` allows a tree of numeric
    datasets (tensors stored by name) below; ``open_members`` are documented extension points
    checked by their own readers."""

    attrs: Mapping[str, Attr] = field(default_factory=dict)
    members: Mapping[str, "Dataset | Group"] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    pattern: str | None = None
    each: "Dataset | Group | None" = None
    max_pattern_members: int = 1 << 20
    any_tree: bool = False
    open_members: frozenset[str] = frozenset()

    def validate(self, node: Node, where: str) -> None:
        if not node.is_group:
            raise ProofFormatError(f"{where} must be a group, found a dataset")
        _check_attrs(node, self.attrs, where)
        if self.any_tree:
            _check_tensor_tree(node, where)
            return
        missing = sorted(set(self.members) - set(node.members) - self.optional)
        if missing:
            raise ProofFormatError(f"{where} lacks {', '.join(missing)}")
        patterned = 0
        for name, child in node.members.items():
            sub = f"{where.rstrip('/')}/{name}"
            if name in self.members:
                self.members[name].validate(child, sub)
            elif name in self.open_members:
                continue
            elif self.pattern is not None and self.each is not None and re.fullmatch(self.pattern, name):
                patterned += 1
                if patterned > self.max_pattern_members:
                    raise ProofFormatError(f"{where} has more than {self.max_pattern_members} entries")
                self.each.validate(child, sub)
            else:
                raise ProofFormatError(f"unexpected entry {sub[:80]!r} (not part of this format; refused)")


def _check_attrs(node: Node, spec: Mapping[str, Attr], where: str) -> None:
    unknown = sorted(set(node.attrs) - set(spec))
    if unknown:
        raise ProofFormatError(f"{where} has unknown attribute(s) {[u[:40] for u in unknown[:4]]} (refused)")
    for name, attr in spec.items():
        if name not in node.attrs:
            if attr.required:
                raise ProofFormatError(f"{where} lacks attribute {name!r}")
            continue
        attr.validate(node.attrs[name], f"attribute {name!r} of {where}")


def _check_tensor_tree(node: Node, where: str) -> None:
    for name, child in node.visit_datasets():
        if child.attrs:
            raise ProofFormatError(f"{where}/{name} has attributes; tensors carry none")
        assert child.dtype is not None
        if child.dtype.kind not in "fiub":
            raise ProofFormatError(f"{where}/{name} is not a numeric tensor")


def hex32(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
