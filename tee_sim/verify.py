"""The attestation verifier: judge a quote against a pinned root, collateral and a policy.

Every check runs and is reported (name, passed, figure, detail); the verdict is "accepted"
only if all pass. Each failure carries a distinct :class:`Reason` code. The vendor root is
the one the *verifier* was configured with; nothing in the evidence can replace it.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tee_sim.collateral import Collateral, TcbStatus
from tee_sim.errors import PolicyError, TeeInputError
from tee_sim.keys import verify_signature
from tee_sim.nonces import NonceRegistry, NonceStatus
from tee_sim.policy import AttestationPolicy, read_policy_file
from tee_sim.quote import Quote, expected_report_data
from tee_sim.quote import output_digest as _output_digest

SCHEMA_VERSION = 1


class Reason(str, enum.Enum):
    """Why a quote was rejected: one code per failed check."""

    NONCE_REPLAYED = "nonce_replayed"
    NONCE_EXPIRED = "nonce_expired"
    NONCE_UNKNOWN = "nonce_unknown"
    NONCE_TOO_SHORT = "nonce_too_short"
    COLLATERAL_SIGNATURE_INVALID = "collateral_signature_invalid"
    COLLATERAL_EXPIRED = "collateral_expired"
    COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"
    PLATFORM_CERTIFICATE_UNTRUSTED = "platform_certificate_untrusted"
    PLATFORM_CERTIFICATE_EXPIRED = "platform_certificate_expired"
    PLATFORM_REVOKED = "platform_revoked"
    ATTESTATION_KEY_CERTIFICATE_INVALID = "attestation_key_certificate_invalid"
    ATTESTATION_KEY_NOT_CERTIFIED = "attestation_key_not_certified"
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    TCB_MISMATCH = "tcb_mismatch"
    TCB_LEVEL_UNKNOWN = "tcb_level_unknown"
    TCB_STATUS_NOT_ALLOWED = "tcb_status_not_allowed"
    DEBUG_ENCLAVE = "debug_enclave"
    MR_ENCLAVE_NOT_ALLOWED = "mr_enclave_not_allowed"
    MR_SIGNER_NOT_ALLOWED = "mr_signer_not_allowed"
    ISV_PROD_ID_NOT_ALLOWED = "isv_prod_id_not_allowed"
    ISV_SVN_TOO_LOW = "isv_svn_too_low"
    REPORT_DATA_MISMATCH = "report_data_mismatch"


_NONCE_REASONS = {
    NonceStatus.REPLAYED: Reason.NONCE_REPLAYED,
    NonceStatus.EXPIRED: Reason.NONCE_EXPIRED,
    NonceStatus.UNKNOWN: Reason.NONCE_UNKNOWN,
    NonceStatus.TOO_SHORT: Reason.NONCE_TOO_SHORT,
}


@dataclass(frozen=True)
class Check:
    """One check of a verification: what was compared and how it came out."""

    name: str
    passed: bool
    figure: str
    detail: str
    reason: Reason | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "figure": self.figure,
            "detail": self.detail,
            "reason": self.reason.value if self.reason else None,
        }


@dataclass(frozen=True)
class QuoteClaims:
    """What the quote claims (authenticated only if the verdict is "accepted")."""

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool
    report_data: bytes
    cpu_svn: bytes
    pce_svn: int
    qe_svn: int
    platform_id: bytes
    fmspc: bytes
    enclave_public_key: bytes
    attestation_public_key: bytes

    @classmethod
    def from_quote(cls, quote: Quote) -> QuoteClaims:
        return cls(
            mr_enclave=quote.body.mr_enclave,
            mr_signer=quote.body.mr_signer,
            isv_prod_id=quote.body.isv_prod_id,
            isv_svn=quote.body.isv_svn,
            debug=quote.body.debug,
            report_data=quote.body.report_data,
            cpu_svn=quote.body.cpu_svn,
            pce_svn=quote.header.pce_svn,
            qe_svn=quote.header.qe_svn,
            platform_id=quote.header.platform_id,
            fmspc=quote.platform_certificate.fmspc,
            enclave_public_key=quote.enclave_public_key,
            attestation_public_key=quote.attestation_public_key,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class AttestationResult:
    """The verifier's structured answer. Never a bare bool: read ``verdict`` and ``reasons``."""

    verdict: str
    reasons: tuple[Reason, ...]
    tcb_status: TcbStatus | None
    advisory_ids: tuple[str, ...]
    claims: QuoteClaims
    checks: tuple[Check, ...]
    simulated: bool = True

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"

    @property
    def reason(self) -> Reason | None:
        """The first failure's code, or None when accepted."""
        return self.reasons[0] if self.reasons else None

    def __bool__(self) -> bool:  # guard against `if verifier.verify(...):`
        raise TypeError("AttestationResult is not a bool; test result.accepted and read result.reasons")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "simulated": self.simulated,
            "reasons": [r.value for r in self.reasons],
            "tcb_status": self.tcb_status.value if self.tcb_status else None,
            "advisory_ids": list(self.advisory_ids),
            "claims": self.claims.to_json(),
            "checks": [c.to_json() for c in self.checks],
        }


class AttestationVerifier:
    """Verifies quotes. Configure it once; call :meth:`verify` per quote.

    ``root_public_key`` is the pinned vendor root (from your configuration, never from the
    evidence); ``collateral`` the vendor's signed TCB info and revocation list; ``policy``
    what you accept; ``nonces`` the registry that issued the nonces you hand to enclaves.
    """

    def __init__(
        self,
        *,
        root_public_key: bytes,
        collateral: Collateral,
        policy: AttestationPolicy,
        nonces: NonceRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(root_public_key, (bytes, bytearray)) or len(root_public_key) != 32:
            raise PolicyError("root_public_key must be the 32-byte Ed25519 vendor root you pinned")
        if not isinstance(policy, AttestationPolicy):
            raise TypeError(f"policy must be an AttestationPolicy, found {type(policy).__name__}")
        if not isinstance(collateral, Collateral):
            raise TypeError(f"collateral must be a Collateral, found {type(collateral).__name__}")
        if not isinstance(nonces, NonceRegistry):
            raise TypeError(f"nonces must be a NonceRegistry, found {type(nonces).__name__}")
        self.root_public_key = bytes(root_public_key)
        self.collateral = collateral
        self.policy = policy
        self.nonces = nonces
        self._clock = clock

    @classmethod
    def from_policy_file(
        cls,
        path: str | os.PathLike[str],
        *,
        collateral: Collateral,
        nonces: NonceRegistry,
        clock: Callable[[], float] = time.time,
    ) -> AttestationVerifier:
        """A verifier whose root and policy come from a policy file."""
        root, policy = read_policy_file(path)
        return cls(root_public_key=root, collateral=collateral, policy=policy, nonces=nonces, clock=clock)

    def verify(
        self,
        quote: Quote | bytes,
        *,
        nonce: bytes,
        output: bytes | None = None,
        output_digest: bytes | None = None,
    ) -> AttestationResult:
        """Judge ``quote`` for ``nonce`` (consumed) and ``output`` (or its SHA-256 ``output_digest``).

        Raises :class:`~tee_sim.errors.QuoteFormatError` if ``quote`` bytes are malformed;
        every other problem is a rejected :class:`AttestationResult`.
        """
        if not isinstance(nonce, (bytes, bytearray)):
            raise TypeError(f"nonce must be bytes, found {type(nonce).__name__}")
        if (output is None) == (output_digest is None):
            raise TypeError("give exactly one of output= or output_digest=")
        digest = _output_digest(output) if output is not None else bytes(output_digest or b"")
        if len(digest) != 32:
            raise TeeInputError(f"output_digest must be 32 bytes (SHA-256), found {len(digest)}")
        # Always judge the canonical bytes: a Quote object is re-read from its serialisation so
        # that what is checked is exactly what was signed.
        quote = Quote.from_bytes(quote.to_bytes() if isinstance(quote, Quote) else quote)
        now = self._clock()
        policy = self.policy
        body, header = quote.body, quote.header
        cert, ak_cert = quote.platform_certificate, quote.attestation_key_certificate
        col = self.collateral
        checks: list[Check] = []

        def add(name: str, passed: bool, figure: str, detail: str, reason: Reason) -> None:
            checks.append(Check(name, passed, figure, detail, None if passed else reason))

        # 1. freshness
        status = self.nonces.consume(bytes(nonce))
        add(
            "nonce",
            status is NonceStatus.FRESH,
            status.value,
            "issued by this verifier, unexpired, first use" if status is NonceStatus.FRESH
            else f"nonce is {status.value}: a quote must answer a fresh nonce this verifier issued",
            _NONCE_REASONS.get(status, Reason.NONCE_UNKNOWN),
        )
        # 2. collateral
        ok = col.verify(self.root_public_key)
        add("collateral_signature", ok, "valid" if ok else "invalid",
            "collateral signed by the pinned vendor root" if ok else "collateral is not signed by the pinned root",
            Reason.COLLATERAL_SIGNATURE_INVALID)
        skew = policy.max_clock_skew_seconds
        if now > col.next_update:
            add("collateral_fresh", False, f"next_update {col.next_update} < now {int(now)}",
                "collateral has expired; fetch current TCB info and revocation list", Reason.COLLATERAL_EXPIRED)
        elif col.issue_date > now + skew:
            add("collateral_fresh", False, f"issue_date {col.issue_date} > now {int(now)}",
                "collateral is dated in the future", Reason.COLLATERAL_NOT_YET_VALID)
        else:
            add("collateral_fresh", True, f"valid until {col.next_update}", "collateral is current",
                Reason.COLLATERAL_EXPIRED)
        # 3. certificate chain: pinned root -> platform -> attestation key -> quote
        ok = cert.verify(self.root_public_key)
        add("platform_certificate", ok, "valid" if ok else "invalid",
            "platform certificate chains to the pinned vendor root" if ok
            else "platform certificate is not signed by the pinned vendor root (foreign or forged root)",
            Reason.PLATFORM_CERTIFICATE_UNTRUSTED)
        ok = cert.not_before - skew <= now <= cert.not_after
        add("platform_certificate_validity", ok, f"{cert.not_before}..{cert.not_after}",
            "within validity period" if ok else "platform certificate is outside its validity period",
            Reason.PLATFORM_CERTIFICATE_EXPIRED)
        revoked = cert.platform_id in col.revoked_platform_ids
        add("platform_revoked", not revoked, "revoked" if revoked else "not revoked",
            f"platform {cert.platform_id.hex()} " + ("is on the revocation list" if revoked else "is not revoked"),
            Reason.PLATFORM_REVOKED)
        ok = ak_cert.verify(cert.pck_public_key) and ak_cert.platform_id == cert.platform_id
        add("attestation_key_certificate", ok, "valid" if ok else "invalid",
            "attestation key certified by the platform key" if ok
            else "attestation key certificate is not signed by this platform's key",
            Reason.ATTESTATION_KEY_CERTIFICATE_INVALID)
        ok = quote.attestation_public_key == ak_cert.attestation_public_key
        add("attestation_key_binding", ok, "match" if ok else "mismatch",
            "quote names the certified attestation key" if ok
            else "quote was signed by an attestation key the platform did not certify",
            Reason.ATTESTATION_KEY_NOT_CERTIFIED)
        ok = verify_signature(quote.attestation_public_key, quote.signed_bytes(), quote.signature)
        add("quote_signature", ok, "valid" if ok else "invalid",
            "header and report body signed by the attestation key in the quote" if ok
            else "quote signature does not verify (quote edited or forged)",
            Reason.QUOTE_SIGNATURE_INVALID)
        # 4. TCB
        mismatches = [
            name
            for name, a, b in (
                ("cpu_svn", body.cpu_svn, cert.cpu_svn),
                ("pce_svn", header.pce_svn, cert.pce_svn),
                ("qe_svn", header.qe_svn, ak_cert.qe_svn),
                ("platform_id", header.platform_id, cert.platform_id),
            )
            if a != b
        ]
        add("tcb_consistency", not mismatches, "consistent" if not mismatches else ",".join(mismatches),
            "quote TCB matches the platform certificate" if not mismatches
            else f"quote and certificates disagree on {', '.join(mismatches)}", Reason.TCB_MISMATCH)
        level = col.tcb_level(cert.fmspc, cert.cpu_svn, cert.pce_svn)
        tcb_status = level.status if level else None
        advisories = level.advisory_ids if level else ()
        if level is None:
            add("tcb_status", False, "unknown",
                f"collateral lists no TCB level for fmspc {cert.fmspc.hex()} at this platform's SVNs",
                Reason.TCB_LEVEL_UNKNOWN)
        else:
            ok = level.status in policy.allowed_tcb_statuses
            allowed = sorted(s.value for s in policy.allowed_tcb_statuses)
            adv = f"; advisories: {', '.join(advisories)}" if advisories else ""
            add("tcb_status", ok, level.status.value,
                (f"{level.status.value} is allowed{adv}" if ok
                 else f"{level.status.value} is not in the allowed statuses {allowed}{adv}"),
                Reason.TCB_STATUS_NOT_ALLOWED)
        # 5. enclave identity
        ok = policy.allow_debug or not body.debug
        add("debug", ok, "debug" if body.debug else "production",
            ("DEBUG enclave allowed by policy (its memory is readable by the host)" if body.debug
             else "production enclave") if ok else "DEBUG enclave: its memory and keys are open to the host",
            Reason.DEBUG_ENCLAVE)
        if not policy.pins_measurement:
            add("measurement", True, "ANY",
                "UNSAFE: policy accepts ANY mr_enclave/mr_signer (allow_any_measurement=true)",
                Reason.MR_ENCLAVE_NOT_ALLOWED)
        if policy.allowed_mr_enclave:
            ok = body.mr_enclave in policy.allowed_mr_enclave
            add("mr_enclave", ok, body.mr_enclave.hex(),
                "code measurement is pinned by the policy" if ok else "code measurement is not in allowed_mr_enclave",
                Reason.MR_ENCLAVE_NOT_ALLOWED)
        if policy.allowed_mr_signer:
            ok = body.mr_signer in policy.allowed_mr_signer
            add("mr_signer", ok, body.mr_signer.hex(),
                "enclave signer is pinned by the policy" if ok else "enclave signer is not in allowed_mr_signer",
                Reason.MR_SIGNER_NOT_ALLOWED)
        if policy.isv_prod_id is not None:
            ok = body.isv_prod_id == policy.isv_prod_id
            add("isv_prod_id", ok, f"{body.isv_prod_id} (want {policy.isv_prod_id})",
                "product id matches" if ok else "product id differs from the policy's",
                Reason.ISV_PROD_ID_NOT_ALLOWED)
        ok = body.isv_svn >= policy.min_isv_svn
        add("isv_svn", ok, f"{body.isv_svn} >= {policy.min_isv_svn}" if ok else f"{body.isv_svn} < {policy.min_isv_svn}",
            "enclave security version is recent enough" if ok else "enclave security version is below min_isv_svn",
            Reason.ISV_SVN_TOO_LOW)
        # 6. binding: report_data = H(enclave key || nonce || output digest)
        expected = expected_report_data(quote.enclave_public_key, bytes(nonce), digest)
        ok = expected == body.report_data
        add("report_data", ok, "match" if ok else "mismatch",
            "report_data binds this nonce, this output and the enclave's key" if ok
            else "report_data does not bind this nonce/output/enclave key (wrong output, nonce or channel)",
            Reason.REPORT_DATA_MISMATCH)

        reasons = tuple(c.reason for c in checks if c.reason is not None)
        return AttestationResult(
            verdict="rejected" if reasons else "accepted",
            reasons=reasons,
            tcb_status=tcb_status,
            advisory_ids=tuple(advisories),
            claims=QuoteClaims.from_quote(quote),
            checks=tuple(checks),
            simulated=quote.simulated,
        )


__all__ = ["AttestationVerifier", "AttestationResult", "Check", "QuoteClaims", "Reason"]
