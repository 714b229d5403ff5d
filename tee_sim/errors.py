"""Errors raised by :mod:`tee_sim`.

Two families, following :mod:`pol.errors`:

* :class:`TeeInputError` (an :class:`pol.errors.InputError`, CLI exit code 2): bytes or files
  that could not be judged at all -- a truncated quote, a collateral document that is not
  JSON, a policy that pins nothing. Parsing untrusted input raises only these.
* :class:`TeeError` (a :class:`pol.errors.PolError`): misuse of the simulation at run time,
  e.g. unsealing data that belongs to another enclave.

A quote that parses but fails a check is *not* an exception: the verifier returns an
:class:`tee_sim.AttestationResult` whose verdict is ``"rejected"`` (exit code 1).
"""

from __future__ import annotations

from pol.errors import InputError, PolError


class TeeError(PolError):
    """Base of run-time errors raised on purpose by the TEE simulation."""


class TeeInputError(InputError):
    """Input for the TEE simulation could not be judged (CLI exit code 2)."""


class QuoteFormatError(TeeInputError, ValueError):
    """Quote bytes are malformed: wrong length, bad version or marker, nonzero reserved bytes."""


class CertificateFormatError(TeeInputError, ValueError):
    """A platform or attestation-key certificate is malformed."""


class CollateralFormatError(TeeInputError, ValueError):
    """A collateral document (TCB info, revocation list) is not well-formed."""


class PolicyError(TeeInputError, ValueError):
    """An attestation policy is malformed or unsafe (e.g. pins no measurement)."""


class NonceFormatError(TeeInputError, ValueError):
    """A nonce is not hex, is shorter than 128 bits, or the nonce store is unreadable."""


class StateError(TeeInputError, ValueError):
    """A simulated vendor or platform state file is missing or malformed."""


class EnclaveError(TeeError):
    """An enclave could not be launched or its function misbehaved."""


class SealingError(TeeError, ValueError):
    """Sealed data is malformed, or cannot be unsealed by this enclave."""


__all__ = [
    "TeeError",
    "TeeInputError",
    "QuoteFormatError",
    "CertificateFormatError",
    "CollateralFormatError",
    "PolicyError",
    "NonceFormatError",
    "StateError",
    "EnclaveError",
    "SealingError",
]
