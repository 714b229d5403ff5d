"""Attestation: an honest quote is accepted; every attack is rejected with its own reason."""

from __future__ import annotations

import dataclasses

import nacl.public
import nacl.signing
import pytest
from tee_helpers import T0, World, segment_v1, segment_v2

from tee_sim import (
    AttestationPolicy,
    Quote,
    Reason,
    SimulatedPlatform,
    SimulatedVendor,
    TcbLevel,
    TcbStatus,
    issue_collateral,
)
from tee_sim.collateral import default_qe_identity
from tee_sim.errors import PolicyError, QuoteFormatError
from tee_sim.keys import AttestationKeyCertificate


INPUT = b"segment input"


def _honest(world: World, data: bytes = INPUT) -> tuple[bytes, bytes, Quote]:
    return world.run(data=data)


def test_tee_accepts_honest_quote(world: World) -> None:
    nonce, output, quote = _honest(world)
    result = world.verifier().verify(quote.to_bytes(), nonce=nonce, input=INPUT, output=output)
    assert result.accepted_simulated, result.reasons
    assert result.verdict == "accepted (simulated)" and not result.accepted
    assert result.reasons == ()
    assert result.reason is None
    assert result.simulated is True
    assert result.tcb_status is TcbStatus.UP_TO_DATE
    assert result.claims.mr_enclave == world.enclave.mr_enclave
    assert result.claims.mr_signer == world.enclave.mr_signer
    assert result.claims.isv_svn == 2
    assert result.claims.debug is False
    assert result.claims.enclave_public_key == world.enclave.public_key
    assert all(check.passed for check in result.checks)
    assert output == segment_v1(b"segment input", {"key": 7})


def test_tee_accepts_output_digest_instead_of_output(world: World) -> None:
    import hashlib

    nonce, output, quote = _honest(world)
    result = world.verifier().verify(quote, nonce=nonce, input_digest=hashlib.sha256(INPUT).digest(),
                                     output_digest=hashlib.sha256(output).digest())
    assert result.accepted_simulated, result.reasons


def test_tee_result_is_not_a_bool(world: World) -> None:
    nonce, output, quote = _honest(world)
    result = world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output)
    with pytest.raises(TypeError):
        bool(result)
    doc = result.to_json()
    assert doc["schema_version"] == 1 and doc["verdict"] == "accepted (simulated)" and doc["simulated"] is True
    assert {c["name"] for c in doc["checks"]} >= {"nonce", "quote_signature", "report_data", "tcb_status"}
    assert all(set(c) >= {"name", "passed", "figure", "detail"} for c in doc["checks"])


def test_tee_rejects_replayed_nonce(world: World) -> None:
    nonce, output, quote = _honest(world)
    verifier = world.verifier()
    assert verifier.verify(quote, nonce=nonce, input=INPUT, output=output).accepted_simulated
    again = verifier.verify(quote, nonce=nonce, input=INPUT, output=output)
    assert again.verdict == "rejected"
    assert again.reasons == (Reason.NONCE_REPLAYED,)


def test_tee_rejects_expired_nonce(world: World) -> None:
    nonce, output, quote = _honest(world)
    world.clock.advance(301)
    result = world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.NONCE_EXPIRED,)


def test_tee_rejects_nonce_not_issued_by_verifier(world: World) -> None:
    nonce = bytes(range(32))  # chosen by the prover, never issued
    output, quote = world.enclave.run(b"x", nonce=nonce)
    result = world.verifier().verify(quote, nonce=nonce, input=b"x", output=output)
    assert result.reasons == (Reason.NONCE_UNKNOWN,)


def test_tee_rejects_wrong_output_digest(world: World) -> None:
    nonce, output, quote = _honest(world)
    result = world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output + b"tampered")
    assert result.reasons == (Reason.REPORT_DATA_MISMATCH,)


def test_tee_rejects_quote_answering_another_nonce(world: World) -> None:
    old_nonce, output, quote = _honest(world)
    new_nonce = world.nonces.issue()
    result = world.verifier().verify(quote, nonce=new_nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.REPORT_DATA_MISMATCH,)


def test_tee_rejects_swapped_enclave_channel_key(world: World) -> None:
    # A man in the middle substitutes its own channel key: the unsigned field is bound by report_data.
    nonce, output, quote = _honest(world)
    mitm = bytes(nacl.public.PrivateKey.generate().public_key)
    forged = dataclasses.replace(quote, enclave_public_key=mitm)
    result = world.verifier().verify(forged.to_bytes(), nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.REPORT_DATA_MISMATCH,)


def test_tee_rejects_foreign_root(world: World) -> None:
    # The attacker runs its own "vendor": its platform certificate does not chain to the pinned root.
    rogue_vendor = SimulatedVendor.generate()
    rogue = SimulatedPlatform.create(rogue_vendor, now=T0 - 3600, qe_mr_signer=world.vendor.qe_mr_signer)
    rogue_enclave = rogue.launch(segment_v1, config={"key": 7}, isv_svn=2)
    assert rogue_enclave.mr_enclave == world.enclave.mr_enclave
    # Give the verifier collateral listing the rogue platform's TCB, so only the root can fail.
    collateral = issue_collateral(world.vendor, platforms=[world.platform, rogue], issue_date=T0 - 60,
                                  next_update=T0 + 86_400)
    result, _ = world.attest(rogue_enclave, collateral=collateral)
    assert result.reasons == (Reason.PLATFORM_CERTIFICATE_UNTRUSTED,)


def test_tee_rejects_collateral_from_foreign_root(world: World) -> None:
    nonce, output, quote = _honest(world)
    rogue = issue_collateral(SimulatedVendor.generate(), platforms=[world.platform], issue_date=T0 - 60,
                             next_update=T0 + 86_400, qe_identity=default_qe_identity(world.vendor))
    result = world.verifier(collateral=rogue).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.COLLATERAL_SIGNATURE_INVALID,)


def test_tee_rejects_edited_collateral(world: World) -> None:
    bad = issue_collateral(world.vendor, platforms=[world.platform], status=TcbStatus.OUT_OF_DATE,
                           issue_date=T0 - 60, next_update=T0 + 86_400)
    upgraded = {k: tuple(dataclasses.replace(lvl, status=TcbStatus.UP_TO_DATE) for lvl in v)
                for k, v in bad.tcb_info.items()}
    edited = dataclasses.replace(bad, tcb_info=upgraded)
    nonce, output, quote = _honest(world)
    result = world.verifier(collateral=edited).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.COLLATERAL_SIGNATURE_INVALID,)


def test_tee_rejects_debug_enclave(world: World) -> None:
    debug_enclave = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=2, debug=True)
    assert debug_enclave.mr_enclave == world.enclave.mr_enclave  # same code; only the attribute differs
    result, quote = world.attest(debug_enclave)
    assert quote.body.debug
    assert result.reasons == (Reason.DEBUG_ENCLAVE,)


def test_tee_accepts_debug_enclave_only_when_policy_allows(world: World) -> None:
    debug_enclave = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=2, debug=True)
    policy = dataclasses.replace(world.policy, allow_debug=True)
    result, _ = world.attest(debug_enclave, policy=policy)
    assert result.accepted_simulated and result.claims.debug


def test_tee_rejects_mr_enclave_not_allowed(world: World) -> None:
    other = world.platform.launch(segment_v2, config={"key": 7}, isv_svn=2)
    result, _ = world.attest(other)
    assert result.reasons == (Reason.MR_ENCLAVE_NOT_ALLOWED,)


def test_tee_rejects_same_code_with_other_config(world: World) -> None:
    other = world.platform.launch(segment_v1, config={"key": 8}, isv_svn=2)
    result, _ = world.attest(other)
    assert result.reasons == (Reason.MR_ENCLAVE_NOT_ALLOWED,)


def test_tee_rejects_isv_svn_too_low(world: World) -> None:
    old = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=1)
    result, _ = world.attest(old)
    assert result.reasons == (Reason.ISV_SVN_TOO_LOW,)


def test_tee_rejects_out_of_date_tcb(world: World) -> None:
    levels = {
        world.platform.fmspc: (
            TcbLevel(bytes([9] * 16), 20, TcbStatus.UP_TO_DATE),
            TcbLevel(bytes(16), 0, TcbStatus.OUT_OF_DATE, ("INTEL-SA-00334", "INTEL-SA-00615")),
        )
    }
    collateral = issue_collateral(world.vendor, tcb_info=levels, issue_date=T0 - 60, next_update=T0 + 86_400)
    nonce, output, quote = _honest(world)
    result = world.verifier(collateral=collateral).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.TCB_STATUS_NOT_ALLOWED,)
    assert result.tcb_status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ("INTEL-SA-00334", "INTEL-SA-00615")


def test_tee_accepts_sw_hardening_needed_when_allowed_and_reports_advisories(world: World) -> None:
    collateral = issue_collateral(world.vendor, platforms=[world.platform], status=TcbStatus.SW_HARDENING_NEEDED,
                                  advisory_ids=["INTEL-SA-00615"], issue_date=T0 - 60, next_update=T0 + 86_400)
    nonce, output, quote = _honest(world)
    strict = world.verifier(collateral=collateral).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert strict.reasons == (Reason.TCB_STATUS_NOT_ALLOWED,)
    policy = dataclasses.replace(
        world.policy, allowed_tcb_statuses=frozenset({TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED})
    )
    nonce, output, quote = _honest(world)
    lenient = world.verifier(collateral=collateral, policy=policy).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert lenient.accepted_simulated
    assert lenient.tcb_status is TcbStatus.SW_HARDENING_NEEDED
    assert lenient.advisory_ids == ("INTEL-SA-00615",)


def test_tee_rejects_platform_missing_from_tcb_info(world: World) -> None:
    other = SimulatedPlatform.create(world.vendor, fmspc=bytes.fromhex("00a067110000"), now=T0 - 3600)
    enclave = other.launch(segment_v1, config={"key": 7}, isv_svn=2)
    result, _ = world.attest(enclave)
    assert result.reasons == (Reason.TCB_LEVEL_UNKNOWN,)
    assert result.tcb_status is None


def test_tee_rejects_revoked_platform(world: World) -> None:
    collateral = issue_collateral(world.vendor, platforms=[world.platform],
                                  revoked_platform_ids=[world.platform.platform_id],
                                  issue_date=T0 - 60, next_update=T0 + 86_400)
    nonce, output, quote = _honest(world)
    result = world.verifier(collateral=collateral).verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.PLATFORM_REVOKED,)


def test_tee_rejects_expired_collateral(world: World) -> None:
    nonce, output, quote = _honest(world)
    world.clock.advance(86_401)
    fresh_nonce = world.nonces.issue()  # the nonce itself is fresh; only the collateral is stale
    output, quote = world.enclave.run(b"data", nonce=fresh_nonce)
    result = world.verifier().verify(quote, nonce=fresh_nonce, input=b"data", output=output)
    assert result.reasons == (Reason.COLLATERAL_EXPIRED,)


def test_tee_rejects_edited_quote_body(world: World) -> None:
    nonce, output, quote = _honest(world)
    raised = dataclasses.replace(quote, body=dataclasses.replace(quote.body, isv_svn=9))
    result = world.verifier().verify(raised.to_bytes(), nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.QUOTE_SIGNATURE_INVALID,)
    assert result.claims.isv_svn == 9  # claims are reported, but not accepted


def test_tee_rejects_every_single_bit_flip_of_signed_bytes(world: World) -> None:
    nonce, output, quote = _honest(world)
    raw = quote.to_bytes()
    verifier = world.verifier()
    outcomes = {"parse_error": 0, "rejected": 0}
    for offset in range(Quote.SIGNED_SIZE):
        flipped = bytearray(raw)
        flipped[offset] ^= 0x01 << (offset % 8)
        try:
            result = verifier.verify(bytes(flipped), nonce=world.nonces.issue(), input=INPUT, output=output)
        except QuoteFormatError:
            outcomes["parse_error"] += 1
            continue
        assert result.verdict == "rejected", offset
        assert Reason.QUOTE_SIGNATURE_INVALID in result.reasons or Reason.TCB_MISMATCH in result.reasons, offset
        outcomes["rejected"] += 1
    assert outcomes["rejected"] >= 250  # most flips parse and must then fail the signature
    assert outcomes["parse_error"] >= 100  # reserved bytes, markers and version are checked at parse time


def test_tee_rejects_signature_by_another_attestation_key(world: World) -> None:
    # The attacker signs a report of its choosing with its own key and names that key in the quote.
    nonce, output, quote = _honest(world)
    rogue_ak = nacl.signing.SigningKey.generate()
    forged_body = dataclasses.replace(quote.body, isv_svn=9)
    unsigned = dataclasses.replace(quote, body=forged_body, attestation_public_key=bytes(rogue_ak.verify_key))
    forged = dataclasses.replace(unsigned, signature=rogue_ak.sign(unsigned.signed_bytes()).signature)
    result = world.verifier().verify(forged.to_bytes(), nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.ATTESTATION_KEY_NOT_CERTIFIED,)


def test_tee_rejects_attestation_key_certificate_not_signed_by_platform(world: World) -> None:
    nonce, output, quote = _honest(world)
    rogue_pck, rogue_ak = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    real = world.platform.attestation_key_certificate
    cert = AttestationKeyCertificate(world.platform.platform_id, world.platform.qe_svn,
                                     bytes(rogue_ak.verify_key), T0, real.qe_mr_signer, real.qe_isv_prod_id)
    cert = dataclasses.replace(cert, signature=rogue_pck.sign(cert.tbs_bytes()).signature)
    unsigned = dataclasses.replace(quote, attestation_public_key=bytes(rogue_ak.verify_key),
                                   attestation_key_certificate=cert)
    forged = dataclasses.replace(unsigned, signature=rogue_ak.sign(unsigned.signed_bytes()).signature)
    result = world.verifier().verify(forged.to_bytes(), nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.ATTESTATION_KEY_CERTIFICATE_INVALID,)


def test_tee_rejects_cpu_svn_claim_not_matching_certificate(world: World) -> None:
    # Reuse the honest AK to model a compromised quoting enclave lying about the CPU's TCB.
    nonce, output, quote = _honest(world)
    lying = dataclasses.replace(quote.body, cpu_svn=bytes([255] * 16))
    header = quote.header
    signed = header.to_bytes() + lying.to_bytes()
    forged = dataclasses.replace(quote, body=lying,
                                 signature=world.platform._attestation_key.sign(signed).signature)
    result = world.verifier().verify(forged, nonce=nonce, input=INPUT, output=output)
    assert result.reasons == (Reason.TCB_MISMATCH,)


def test_tee_mr_signer_policy_accepts_new_code_from_same_signer(world: World) -> None:
    signer = nacl.signing.SigningKey.generate()
    v1 = world.platform.launch(segment_v1, signer=signer, isv_prod_id=3, isv_svn=2)
    v2 = world.platform.launch(segment_v2, signer=signer, isv_prod_id=3, isv_svn=3)
    stranger = world.platform.launch(segment_v1, isv_prod_id=3, isv_svn=3)  # the public dev signer
    policy = AttestationPolicy(allowed_mr_signer=frozenset({v1.mr_signer}), isv_prod_id=3, min_isv_svn=2)
    verifier = world.verifier(policy=policy)
    for enclave in (v1, v2):
        assert world.attest(enclave, verifier=verifier)[0].accepted_simulated
    assert world.attest(stranger, verifier=verifier)[0].reasons == (Reason.MR_SIGNER_NOT_ALLOWED,)
    other_product = world.platform.launch(segment_v1, signer=signer, isv_prod_id=4, isv_svn=3)
    assert world.attest(other_product, verifier=verifier)[0].reasons == (Reason.ISV_PROD_ID_NOT_ALLOWED,)


def test_tee_channel_key_reaches_only_the_attested_enclave(world: World) -> None:
    nonce, output, quote = _honest(world)
    result = world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output)
    assert result.accepted_simulated
    box = nacl.public.SealedBox(nacl.public.PublicKey(result.claims.enclave_public_key))
    ciphertext = box.encrypt(b"model weights key")
    assert world.enclave.decrypt(ciphertext) == b"model weights key"
    twin = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=2)
    from tee_sim.errors import EnclaveError

    with pytest.raises(EnclaveError):
        twin.decrypt(ciphertext)


def test_tee_verifier_requires_a_pinned_root(world: World) -> None:
    with pytest.raises(PolicyError):
        world.verifier(root_public_key=b"")
    with pytest.raises(TypeError):
        world.verifier(policy=None)


def test_tee_verifier_needs_input_and_output_or_fields(world: World) -> None:
    nonce, output, quote = _honest(world)
    with pytest.raises(TypeError):
        world.verifier().verify(quote, nonce=nonce)
    with pytest.raises(TypeError):
        world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output, output_digest=b"\x00" * 32)
    with pytest.raises(TypeError):
        world.verifier().verify(quote, nonce=nonce, output=output)  # the input must be bound too
    with pytest.raises(TypeError):
        world.verifier().verify(quote, nonce=nonce, input=INPUT, output=output, report_fields={"a": 1})
