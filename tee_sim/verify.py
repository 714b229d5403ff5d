"""The attestation verifier: judge a quote against a pinned root, collateral and a policy.

Every check runs and is reported (name, passed, figure, detail); each failure carries a
distinct :class:`Reason` code. The verdict is ``"accepted (simulated)"`` when every check
passes on simulated evidence (all evidence this package parses is), ``"accepted"`` only for
hardware evidence (never produced here), ``"rejected"`` otherwise; a policy with
``require_hardware`` rejects simulated evidence. What the verifier trusts is its own: the
vendor root it pinned, the collateral in its :class:`~tee_sim.collateral_store.CollateralStore`,
the nonce it issued. A nonce is consumed only by a quote that authenticates (certificate
chain, quote signature, report data for this very nonce), so nobody can burn it by sending
garbage with it.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tee_sim.collateral import Collateral, TcbStatus
from tee_sim.collateral_store import CollateralStore
from tee_sim.errors import PolicyError, TeeInputError
from tee_sim.keys import verify_signature
from tee_sim.nonces import NonceRegistry, NonceStatus
from tee_sim.policy import AttestationPolicy, read_policy_file
from tee_sim.quote import KIND_CLAIMS, KIND_RUN, Quote, expected_report_data, run_fields, sha256

SCHEMA_VERSION = 1
ACCEPTED = "accepted"
ACCEPTED_SIMULATED = "accepted (simulated)"
REJECTED = "rejected"


class Reason(str, enum.Enum):
    """Why a quote was rejected: one code per failed check."""

    NONCE_REPLAYED = "nonce_replayed"
    NONCE_EXPIRED = "nonce_expired"
    NONCE_UNKNOWN = "nonce_unknown"
    NONCE_TOO_SHORT = "nonce_too_short"
    COLLATERAL_SIGNATURE_INVALID = "collateral_signature_invalid"
    COLLATERAL_EXPIRED = "collateral_expired"
    COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"
    COLLATERAL_OUTDATED = "collateral_outdated"
    PLATFORM_CERTIFICATE_UNTRUSTED = "platform_certificate_untrusted"
    PLATFORM_CERTIFICATE_EXPIRED = "platform_certificate_expired"
    PLATFORM_REVOKED = "platform_revoked"
    ATTESTATION_KEY_CERTIFICATE_INVALID = "attestation_key_certificate_invalid"
    ATTESTATION_KEY_NOT_CERTIFIED = "attestation_key_not_certified"
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    TCB_MISMATCH = "tcb_mismatch"
    TCB_LEVEL_UNKNOWN = "tcb_level_unknown"
    TCB_STATUS_NOT_ALLOWED = "tcb_status_not_allowed"
    QE_IDENTITY_MISMATCH = "qe_identity_mismatch"
    QE_TCB_LEVEL_UNKNOWN = "qe_tcb_level_unknown"
    QE_STATUS_NOT_ALLOWED = "qe_status_not_allowed"
    DEBUG_ENCLAVE = "debug_enclave"
    MR_ENCLAVE_NOT_ALLOWED = "mr_enclave_not_allowed"
    MR_SIGNER_NOT_ALLOWED = "mr_signer_not_allowed"
    ISV_PROD_ID_NOT_ALLOWED = "isv_prod_id_not_allowed"
    ISV_SVN_TOO_LOW = "isv_svn_too_low"
    REPORT_DATA_MISMATCH = "report_data_mismatch"
    SIMULATED_EVIDENCE = "simulated_evidence"


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
    collateral: dict[str, int] | None = None

    @property
    def accepted(self) -> bool:
        """Accepted on hardware evidence. Never True in this package: see :attr:`accepted_simulated`."""
        return self.verdict == ACCEPTED

    @property
    def accepted_simulated(self) -> bool:
        """Every check passed, on simulated evidence (proves nothing about hardware)."""
        return self.verdict == ACCEPTED_SIMULATED

    @property
    def reason(self) -> Reason | None:
        """The first failure's code, or None when accepted."""
        return self.reasons[0] if self.reasons else None

    def __bool__(self) -> bool:  # guard against `if verifier.verify(...):`
        raise TypeError("AttestationResult is not a bool; read result.verdict (accepted_simulated / accepted) "
                        "and result.reasons")

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
            "collateral": self.collateral,
        }


class AttestationVerifier:
    """Verifies quotes. Configure it once; call :meth:`verify` per quote.

    ``root_public_key`` is the pinned vendor root (from your configuration, never from the
    evidence); ``collateral`` the verifier's :class:`CollateralStore` (or one
    :class:`Collateral` it chose itself); ``policy`` what you accept; ``nonces`` the registry
    that issued the nonces you hand to enclaves.
    """

    def __init__(
        self,
        *,
        root_public_key: bytes,
        collateral: Collateral | CollateralStore,
        policy: AttestationPolicy,
        nonces: NonceRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(root_public_key, (bytes, bytearray)) or len(root_public_key) != 32:
            raise PolicyError("root_public_key must be the 32-byte Ed25519 vendor root you pinned")
        if not isinstance(policy, AttestationPolicy):
            raise TypeError(f"policy must be an AttestationPolicy, found {type(policy).__name__}")
        if not isinstance(collateral, (Collateral, CollateralStore)):
            raise TypeError(f"collateral must be a Collateral or CollateralStore, found {type(collateral).__name__}")
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
        collateral: Collateral | CollateralStore,
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
        input: bytes | None = None,  # noqa: A002 - the enclave's input, as Enclave.run names it
        output: bytes | None = None,
        input_digest: bytes | None = None,
        output_digest: bytes | None = None,
        report_fields: Mapping[str, str | int] | None = None,
    ) -> AttestationResult:
        """Judge ``quote`` for ``nonce`` and what its report data must bind.

        For a quote from ``Enclave.run``: the input you sent and the output you got (``input=``,
        ``output=``, or their SHA-256 ``input_digest=``, ``output_digest=``). For one from
        ``Enclave.attest``: the claims you expect (``report_fields=``). Raises
        :class:`~tee_sim.errors.QuoteFormatError` if ``quote`` bytes are malformed; every other
        problem is a rejected :class:`AttestationResult`.
        """
        if not isinstance(nonce, (bytes, bytearray)):
            raise TypeError(f"nonce must be bytes, found {type(nonce).__name__}")
        kind, fields = _expected_binding(input, output, input_digest, output_digest, report_fields)
        # Always judge the canonical bytes: a Quote object is re-read from its serialisation so
        # that what is checked is exactly what was signed.
        quote = Quote.from_bytes(quote.to_bytes() if isinstance(quote, Quote) else quote)
        col = self.collateral.current if isinstance(self.collateral, CollateralStore) else self.collateral
        if col is None:
            raise TeeInputError("the verifier's collateral store is empty: refresh it from the vendor first")
        run = _Run(quote, col, self.policy, self.root_public_key, self._clock())
        run.collateral_checks()
        authentic = run.chain_checks()
        expected = expected_report_data(quote.enclave_public_key, bytes(nonce), kind, fields)
        bound = run.add("report_data", expected == quote.body.report_data,
                        "match" if expected == quote.body.report_data else "mismatch",
                        f"report_data binds this nonce, the enclave's key and the expected {kind} fields"
                        if expected == quote.body.report_data else
                        f"report_data does not bind this nonce/{'input/output' if kind == KIND_RUN else 'claims'}/"
                        "enclave key (wrong data, nonce or channel)", Reason.REPORT_DATA_MISMATCH)
        # The nonce is used up only by an authentic quote that answers it: anyone can send
        # garbage with a nonce they saw, and that must not deny the honest enclave its answer.
        consumed = authentic and bound
        status = self.nonces.consume(bytes(nonce)) if consumed else self.nonces.peek(bytes(nonce))
        run.checks.insert(0, Check(
            "nonce", status is NonceStatus.FRESH, status.value,
            ("issued by this verifier, unexpired, first use" + ("" if consumed else
                                                                 "; not consumed: the quote did not authenticate"))
            if status is NonceStatus.FRESH
            else f"nonce is {status.value}: a quote must answer a fresh nonce this verifier issued",
            None if status is NonceStatus.FRESH else _NONCE_REASONS.get(status, Reason.NONCE_UNKNOWN)))
        run.tcb_checks()
        run.identity_checks()
        reasons = tuple(c.reason for c in run.checks if c.reason is not None)
        verdict = REJECTED if reasons else (ACCEPTED_SIMULATED if quote.simulated else ACCEPTED)
        return AttestationResult(
            verdict=verdict,
            reasons=reasons,
            tcb_status=run.tcb_status,
            advisory_ids=run.advisories,
            claims=QuoteClaims.from_quote(quote),
            checks=tuple(run.checks),
            simulated=quote.simulated,
            collateral={"tcb_evaluation_data_number": col.tcb_evaluation_data_number, "issue_date": col.issue_date,
                        "next_update": col.next_update},
        )


def _expected_binding(input: bytes | None, output: bytes | None, input_digest: bytes | None,  # noqa: A002
                      output_digest: bytes | None, report_fields: Mapping[str, str | int] | None
                      ) -> tuple[str, Mapping[str, str | int]]:
    """(kind, fields) the report data must bind, from exactly one way of naming them."""
    if report_fields is not None:
        if any(x is not None for x in (input, output, input_digest, output_digest)):
            raise TypeError("give report_fields= alone, or the input and output of a run")
        return KIND_CLAIMS, report_fields
    if (input is None) == (input_digest is None) or (output is None) == (output_digest is None):
        raise TypeError("give the run's input (input= or input_digest=) and output (output= or output_digest=), "
                        "or report_fields= for an Enclave.attest quote")
    digests = [sha256(v) if v is not None else bytes(d or b"")
               for v, d in ((input, input_digest), (output, output_digest))]
    if any(len(d) != 32 for d in digests):
        raise TeeInputError("input_digest and output_digest must be 32 bytes (SHA-256)")
    return KIND_RUN, run_fields(digests[0], digests[1])


class _Run:
    """The checks of one verification, in order (private)."""

    def __init__(self, quote: Quote, collateral: Collateral, policy: AttestationPolicy, root: bytes,
                 now: float) -> None:
        self.quote, self.col, self.policy, self.root, self.now = quote, collateral, policy, root, now
        self.checks: list[Check] = []
        self.tcb_status: TcbStatus | None = None
        self.advisories: tuple[str, ...] = ()

    def add(self, name: str, passed: bool, figure: str, detail: str, reason: Reason) -> bool:
        self.checks.append(Check(name, passed, figure, detail, None if passed else reason))
        return passed

    def collateral_checks(self) -> None:
        col, policy, now = self.col, self.policy, self.now
        ok = col.verify(self.root)
        self.add("collateral_signature", ok, "valid" if ok else "invalid",
                 "collateral signed by the pinned vendor root" if ok else "collateral is not signed by the pinned root",
                 Reason.COLLATERAL_SIGNATURE_INVALID)
        skew = policy.max_clock_skew_seconds
        if now > col.next_update:
            self.add("collateral_fresh", False, f"next_update {col.next_update} < now {int(now)}",
                     "collateral has expired; fetch current TCB info and revocation list", Reason.COLLATERAL_EXPIRED)
        elif col.issue_date > now + skew:
            self.add("collateral_fresh", False, f"issue_date {col.issue_date} > now {int(now)}",
                     "collateral is dated in the future", Reason.COLLATERAL_NOT_YET_VALID)
        else:
            self.add("collateral_fresh", True, f"valid until {col.next_update}", "collateral is current",
                     Reason.COLLATERAL_EXPIRED)
        ok = (col.tcb_evaluation_data_number >= policy.min_tcb_evaluation_data_number
              and col.issue_date >= policy.min_collateral_issue_date)
        self.add("collateral_policy", ok,
                 f"evaluation {col.tcb_evaluation_data_number}, issued {col.issue_date}",
                 "collateral meets the policy's minimum TCB evaluation number and issue date" if ok
                 else f"collateral is older than the policy accepts (evaluation >= "
                      f"{policy.min_tcb_evaluation_data_number}, issued >= {policy.min_collateral_issue_date})",
                 Reason.COLLATERAL_OUTDATED)

    def chain_checks(self) -> bool:
        """Pinned root -> platform -> attestation key -> quote. True when all of it verifies."""
        quote, col, now = self.quote, self.col, self.now
        cert, ak_cert = quote.platform_certificate, quote.attestation_key_certificate
        skew = self.policy.max_clock_skew_seconds
        ok = cert.verify(self.root)
        chained = self.add("platform_certificate", ok, "valid" if ok else "invalid",
                           "platform certificate chains to the pinned vendor root" if ok
                           else "platform certificate is not signed by the pinned vendor root (foreign or forged root)",
                           Reason.PLATFORM_CERTIFICATE_UNTRUSTED)
        ok = cert.not_before - skew <= now <= cert.not_after
        self.add("platform_certificate_validity", ok, f"{cert.not_before}..{cert.not_after}",
                 "within validity period" if ok else "platform certificate is outside its validity period",
                 Reason.PLATFORM_CERTIFICATE_EXPIRED)
        revoked = cert.platform_id in col.revoked_platform_ids
        self.add("platform_revoked", not revoked, "revoked" if revoked else "not revoked",
                 f"platform {cert.platform_id.hex()} " + ("is on the revocation list" if revoked else "is not revoked"),
                 Reason.PLATFORM_REVOKED)
        ok = ak_cert.verify(cert.pck_public_key) and ak_cert.platform_id == cert.platform_id
        certified = self.add("attestation_key_certificate", ok, "valid" if ok else "invalid",
                             "attestation key certified by the platform key" if ok
                             else "attestation key certificate is not signed by this platform's key",
                             Reason.ATTESTATION_KEY_CERTIFICATE_INVALID)
        ok = quote.attestation_public_key == ak_cert.attestation_public_key
        named = self.add("attestation_key_binding", ok, "match" if ok else "mismatch",
                         "quote names the certified attestation key" if ok
                         else "quote was signed by an attestation key the platform did not certify",
                         Reason.ATTESTATION_KEY_NOT_CERTIFIED)
        ok = verify_signature(quote.attestation_public_key, quote.signed_bytes(), quote.signature)
        signed = self.add("quote_signature", ok, "valid" if ok else "invalid",
                          "header and report body signed by the attestation key in the quote" if ok
                          else "quote signature does not verify (quote edited or forged)",
                          Reason.QUOTE_SIGNATURE_INVALID)
        return chained and certified and named and signed

    def tcb_checks(self) -> None:
        quote, col, policy = self.quote, self.col, self.policy
        body, header = quote.body, quote.header
        cert, ak_cert = quote.platform_certificate, quote.attestation_key_certificate
        mismatches = [name for name, a, b in (("cpu_svn", body.cpu_svn, cert.cpu_svn),
                                              ("pce_svn", header.pce_svn, cert.pce_svn),
                                              ("qe_svn", header.qe_svn, ak_cert.qe_svn),
                                              ("platform_id", header.platform_id, cert.platform_id)) if a != b]
        self.add("tcb_consistency", not mismatches, "consistent" if not mismatches else ",".join(mismatches),
                 "quote TCB matches the platform certificate" if not mismatches
                 else f"quote and certificates disagree on {', '.join(mismatches)}", Reason.TCB_MISMATCH)
        allowed = sorted(s.value for s in policy.allowed_tcb_statuses)
        level = col.tcb_level(cert.fmspc, cert.cpu_svn, cert.pce_svn)
        if level is None:
            self.add("tcb_status", False, "unknown",
                     f"collateral lists no TCB level for fmspc {cert.fmspc.hex()} at this platform's SVNs",
                     Reason.TCB_LEVEL_UNKNOWN)
        else:
            self.tcb_status, self.advisories = level.status, level.advisory_ids
            ok = level.status in policy.allowed_tcb_statuses
            adv = f"; advisories: {', '.join(level.advisory_ids)}" if level.advisory_ids else ""
            self.add("tcb_status", ok, level.status.value,
                     f"{level.status.value} is allowed{adv}" if ok
                     else f"{level.status.value} is not in the allowed statuses {allowed}{adv}",
                     Reason.TCB_STATUS_NOT_ALLOWED)
        qe = col.qe_identity
        ok = ak_cert.qe_mr_signer == qe.mr_signer and ak_cert.qe_isv_prod_id == qe.isv_prod_id
        self.add("qe_identity", ok, ak_cert.qe_mr_signer.hex()[:16],
                 "the quoting enclave is the vendor's (signer and product id per the collateral)" if ok
                 else "the quoting enclave is not the one the vendor's collateral names", Reason.QE_IDENTITY_MISMATCH)
        qe_level = qe.level(ak_cert.qe_svn)
        if qe_level is None:
            self.add("qe_status", False, f"qe_svn {ak_cert.qe_svn}: unknown",
                     "the collateral lists no TCB level for this quoting enclave version", Reason.QE_TCB_LEVEL_UNKNOWN)
        else:
            ok = qe_level.status in policy.allowed_tcb_statuses
            self.add("qe_status", ok, f"qe_svn {ak_cert.qe_svn}: {qe_level.status.value}",
                     "the quoting enclave version is allowed" if ok
                     else f"quoting enclave status {qe_level.status.value} is not in {allowed}",
                     Reason.QE_STATUS_NOT_ALLOWED)

    def identity_checks(self) -> None:
        body, policy = self.quote.body, self.policy
        ok = policy.allow_debug or not body.debug
        self.add("debug", ok, "debug" if body.debug else "production",
                 ("DEBUG enclave allowed by policy (its memory is readable by the host)" if body.debug
                  else "production enclave") if ok else "DEBUG enclave: its memory and keys are open to the host",
                 Reason.DEBUG_ENCLAVE)
        if not policy.pins_measurement:
            self.add("measurement", True, "ANY",
                     "UNSAFE: policy accepts ANY mr_enclave/mr_signer (allow_any_measurement=true)",
                     Reason.MR_ENCLAVE_NOT_ALLOWED)
        if policy.allowed_mr_enclave:
            ok = body.mr_enclave in policy.allowed_mr_enclave
            self.add("mr_enclave", ok, body.mr_enclave.hex(),
                     "code measurement is pinned by the policy" if ok
                     else "code measurement is not in allowed_mr_enclave", Reason.MR_ENCLAVE_NOT_ALLOWED)
        if policy.allowed_mr_signer:
            ok = body.mr_signer in policy.allowed_mr_signer
            self.add("mr_signer", ok, body.mr_signer.hex(),
                     "enclave signer is pinned by the policy" if ok else "enclave signer is not in allowed_mr_signer",
                     Reason.MR_SIGNER_NOT_ALLOWED)
        if policy.isv_prod_id is not None:
            ok = body.isv_prod_id == policy.isv_prod_id
            self.add("isv_prod_id", ok, f"{body.isv_prod_id} (want {policy.isv_prod_id})",
                     "product id matches" if ok else "product id differs from the policy's",
                     Reason.ISV_PROD_ID_NOT_ALLOWED)
        ok = body.isv_svn >= policy.min_isv_svn
        self.add("isv_svn", ok,
                 f"{body.isv_svn} >= {policy.min_isv_svn}" if ok else f"{body.isv_svn} < {policy.min_isv_svn}",
                 "enclave security version is recent enough" if ok
                 else "enclave security version is below min_isv_svn", Reason.ISV_SVN_TOO_LOW)
        simulated = self.quote.simulated
        ok = not (simulated and policy.require_hardware)
        self.add("hardware", ok, "simulated" if simulated else "hardware",
                 ("simulated evidence: proves nothing about hardware (accepted as simulated)" if simulated
                  else "hardware evidence") if ok
                 else "the policy requires hardware evidence and this quote is simulated", Reason.SIMULATED_EVIDENCE)


__all__ = ["AttestationVerifier", "AttestationResult", "Check", "QuoteClaims", "Reason", "ACCEPTED",
           "ACCEPTED_SIMULATED", "REJECTED"]
