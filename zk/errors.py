"""Errors raised by :mod:`zk`.

A proof that was read and judged but does not verify raises :class:`ProofRejected` (a
forgotten check cannot pass silently); the CLI turns it into a failed check and exit code 1.
Input that cannot be judged at all (malformed bytes, a point off the curve, a file that does
not follow the documented layout) raises :class:`ZkFormatError`, an
:class:`pol.errors.InputError` (exit code 2).
"""

from __future__ import annotations

from pol.errors import InputError, PolError


class ZkError(PolError):
    """Base of every error raised on purpose by :mod:`zk`."""


class ProofRejected(ZkError):
    """A commitment, opening or proof was judged and does not verify."""


class ZkFormatError(ZkError, InputError, ValueError):
    """Malformed zk input: bad encoding, wrong length, unknown version, missing field."""


class PointDecodeError(ZkFormatError):
    """Bytes that are not a valid G1 point (bad flags, off the curve, outside the subgroup)."""


class BackendUnavailableError(ZkError, InputError, RuntimeError):
    """The requested curve backend cannot be used (e.g. py-arkworks-bls12381 not installed)."""


__all__ = ["ZkError", "ProofRejected", "ZkFormatError", "PointDecodeError", "BackendUnavailableError"]
