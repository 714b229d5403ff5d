"""Helpers for the tee_sim tests (a fake clock, an honest world; enclave code is in enclave_code.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from enclave_code import segment_v1, segment_v2  # noqa: F401 - re-exported for the tests

from tee_sim import (
    AttestationPolicy,
    AttestationResult,
    AttestationVerifier,
    Collateral,
    Enclave,
    NonceRegistry,
    Quote,
    SimulatedPlatform,
    SimulatedVendor,
    issue_collateral,
)

T0 = 1_700_000_000


class FakeClock:
    """A settable clock for nonce TTLs and collateral expiry."""

    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    vendor: SimulatedVendor
    platform: SimulatedPlatform
    enclave: Enclave
    collateral: Collateral
    nonces: NonceRegistry
    policy: AttestationPolicy
    clock: FakeClock

    def verifier(self, **changes: Any) -> AttestationVerifier:
        kwargs: dict[str, Any] = {
            "root_public_key": self.vendor.public_key,
            "collateral": self.collateral,
            "policy": self.policy,
            "nonces": self.nonces,
            "clock": self.clock,
        }
        kwargs.update(changes)
        return AttestationVerifier(**kwargs)

    def run(self, enclave: Enclave | None = None, data: bytes = b"data") -> tuple[bytes, bytes, Quote]:
        """``(nonce, output, quote)``: a fresh nonce, then ``enclave`` (default: the honest one) run on ``data``."""
        nonce = self.nonces.issue()
        output, quote = (self.enclave if enclave is None else enclave).run(data, nonce=nonce)
        return nonce, output, quote

    def attest(
        self, enclave: Enclave | None = None, *, verifier: AttestationVerifier | None = None, **changes: Any
    ) -> tuple[AttestationResult, Quote]:
        """Run ``enclave`` on a fresh nonce; verify with ``verifier`` (default: ``self.verifier(**changes)``)."""
        nonce, output, quote = self.run(enclave)
        checker = self.verifier(**changes) if verifier is None else verifier
        return checker.verify(quote, nonce=nonce, input=b"data", output=output), quote


def make_world(clock: FakeClock) -> World:
    """An honest setup: one vendor, one platform, one enclave, matching collateral and policy."""
    vendor = SimulatedVendor.generate()
    platform = SimulatedPlatform.create(vendor, now=T0 - 3600)
    enclave = platform.launch(segment_v1, config={"key": 7}, isv_svn=2)
    collateral = issue_collateral(vendor, platforms=[platform], issue_date=T0 - 60, next_update=T0 + 86_400)
    nonces = NonceRegistry(ttl_seconds=300, clock=clock)
    policy = AttestationPolicy(allowed_mr_enclave=frozenset({enclave.mr_enclave}), min_isv_svn=2)
    return World(vendor, platform, enclave, collateral, nonces, policy, clock)
