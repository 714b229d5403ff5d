"""Enclave measurements: what ``mr_enclave`` and ``mr_signer`` mean in this simulation.

``mr_enclave = SHA-256( lp("pol-tee-sim/mr_enclave/v1") || lp(module + "." + qualname) ||
lp(inspect.getsource(fn)) || lp(canonical_json(config)) )`` where ``lp(x)`` is ``x``
prefixed by its length as a little-endian u64 (so the parts cannot run into each other).
Any change to the function's source text, its name, or its configuration changes it.

``mr_signer = SHA-256(signer's Ed25519 public key)`` (SGX hashes the RSA modulus of the
SIGSTRUCT signer; same idea).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import nacl.signing

from tee_sim._encoding import canonical_json
from tee_sim.errors import EnclaveError

MEASUREMENT_CONTEXT = b"pol-tee-sim/mr_enclave/v1"

#: Seed of the well-known *development* enclave signer. It is public: anyone can sign with it,
#: so pinning its mr_signer pins nothing. Production enclaves pass their own ``signer``.
DEV_SIGNER_SEED = hashlib.sha256(b"pol-tee-sim development enclave signer (public, do not trust)").digest()


def dev_signer() -> nacl.signing.SigningKey:
    """The well-known development signer (like the SGX SDK's sample enclave key)."""
    return nacl.signing.SigningKey(DEV_SIGNER_SEED)


def _lp(part: bytes) -> bytes:
    return len(part).to_bytes(8, "little") + part


def config_bytes(config: Mapping[str, Any] | None) -> bytes:
    """Canonical JSON of an enclave configuration; raise EnclaveError if not JSON-serialisable."""
    try:
        return canonical_json(dict(config or {}))
    except (TypeError, ValueError) as exc:
        raise EnclaveError(f"enclave config must be JSON-serialisable (str keys, no NaN): {exc}") from None


def function_identity(fn: Callable[..., Any]) -> tuple[str, str]:
    """(qualified name, source text) of ``fn``; raise EnclaveError when the source is unavailable."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        raise EnclaveError(
            f"cannot measure {name}: its source is unavailable ({exc}); enclave code must be a "
            "Python function defined in a file"
        ) from None
    return name, source


def measure(fn: Callable[..., Any], config: Mapping[str, Any] | None = None) -> bytes:
    """The 32-byte ``mr_enclave`` of running ``fn`` with ``config``."""
    name, source = function_identity(fn)
    h = hashlib.sha256()
    for part in (MEASUREMENT_CONTEXT, name.encode("utf-8"), source.encode("utf-8"), config_bytes(config)):
        h.update(_lp(part))
    return h.digest()


def mr_signer_of(signer_public_key: bytes) -> bytes:
    """The 32-byte ``mr_signer`` of an Ed25519 enclave-signing public key."""
    return hashlib.sha256(bytes(signer_public_key)).digest()


DEV_SIGNER_MR_SIGNER = mr_signer_of(bytes(dev_signer().verify_key))

__all__ = ["measure", "mr_signer_of", "dev_signer", "DEV_SIGNER_MR_SIGNER", "config_bytes"]
