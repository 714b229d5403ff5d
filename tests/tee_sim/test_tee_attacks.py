"""Issue 12's findings against tee_sim: each attack that used to pass is rejected now."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import sys
from pathlib import Path

import pytest
from enclave_code import make_segment, segment_v1, segment_with_helper
from tee_helpers import T0, World

from tee_sim import (
    AttestationPolicy,
    CodeImage,
    CollateralStore,
    Reason,
    SimulatedPlatform,
    SimulatedVendor,
    StoreUpdate,
    TcbStatus,
    issue_collateral,
    measure,
)
from tee_sim.errors import EnclaveError

# --------------------------------------------------------------------------- measurements cover the code


def test_same_source_closures_are_refused(world: World) -> None:
    a, b = make_segment(1), make_segment(2)
    assert a(b"\x00", {}) != b(b"\x00", {})  # same source text, different behaviour
    for fn in (a, b):
        with pytest.raises(EnclaveError, match="closure"):
            world.platform.launch(fn)
        with pytest.raises(EnclaveError, match="closure"):
            measure(fn)


def test_patched_callee_does_not_run_inside_the_enclave(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import enclave_code

    honest = world.platform.launch(segment_with_helper)
    expected = bytes(b ^ 0x5A for b in b"abc")
    monkeypatch.setattr(enclave_code, "_mask", lambda b: 0)  # the host patches a function the code calls
    assert segment_with_helper(b"abc", {}) == b"\x00\x00\x00"  # on the host the patch takes effect
    patched = world.platform.launch(segment_with_helper)
    assert patched.mr_enclave == honest.mr_enclave  # the measured files did not change ...
    nonce = world.nonces.issue()
    output, quote = patched.run(b"abc", nonce=nonce)
    assert output == expected  # ... and neither did the code the enclave ran: it loads the measured bytes
    result = world.verifier(policy=AttestationPolicy(allowed_mr_enclave={honest.mr_enclave})).verify(
        quote, nonce=nonce, input=b"abc", output=output)
    assert result.accepted_simulated, result.reasons


def _write_package(root: Path, helper_body: str) -> None:
    pkg = root / "tee_measured_pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text(  # a relative import: its package is loaded inside the enclave first
        "from .helper import mask\n\n\n"
        "def run(data, config):\n    return bytes(mask(b) for b in data)\n"
    )
    (pkg / "helper.py").write_text(f"def mask(b):\n    return {helper_body}\n")


def test_measurement_covers_project_modules_the_code_imports(world: World, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _write_package(tmp_path, "b ^ 1")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("tee_measured_pkg", "tee_measured_pkg.entry", "tee_measured_pkg.helper"):
        sys.modules.pop(name, None)
    entry = importlib.import_module("tee_measured_pkg.entry")
    first = measure(entry.run)
    _write_package(tmp_path, "b ^ 2")  # only the imported helper changes; run()'s own source does not
    second = measure(entry.run)
    assert first != second
    enclave = world.platform.launch(entry.run)  # the host still has the old helper loaded
    assert enclave.mr_enclave == second
    output, _ = enclave.run(b"\x00", nonce=world.nonces.issue())
    assert output == b"\x02"  # what ran is what was measured
    for name in ("tee_measured_pkg", "tee_measured_pkg.entry", "tee_measured_pkg.helper"):
        sys.modules.pop(name, None)


def test_first_party_code_outside_the_image_is_refused_at_run_time(world: World) -> None:
    from enclave_code import dynamic_import

    enclave = world.platform.launch(dynamic_import)
    assert [m.name for m in enclave.image.modules] == ["enclave_code"]
    with pytest.raises(EnclaveError, match="outside its measured image"):
        enclave.run(b"", nonce=world.nonces.issue())


def test_attest_only_image_covers_the_project_modules(world: World) -> None:
    image = CodeImage.of_modules(["pol.keys"])
    names = {m.name for m in image.modules}
    assert {"pol", "pol.keys", "pol.errors"} <= names  # the package __init__ and what pol.keys imports
    assert image.entry is None and "nacl" in image.external
    node = world.platform.launch(image, config={"stage": 1})
    assert node.mr_enclave == measure(image, {"stage": 1}) != measure(image, {"stage": 2})
    with pytest.raises(EnclaveError, match="attest, not run"):
        node.run(b"x", nonce=world.nonces.issue())


def test_sealed_data_does_not_open_for_another_closure(world: World) -> None:
    # The old simulation measured both closures alike, so data sealed by one opened for the other.
    with pytest.raises(EnclaveError, match="closure"):
        world.platform.launch(make_segment(7)).seal(b"secret")


# --------------------------------------------------------------------------- report data binds the input


def test_input_is_bound_as_well_as_the_output(world: World) -> None:
    nonce, output, quote = world.run(data=b"what the verifier sent")
    verifier = world.verifier()
    other = verifier.verify(quote, nonce=nonce, input=b"another input", output=output)
    assert other.reasons == (Reason.REPORT_DATA_MISMATCH,)
    ok = world.verifier().verify(quote, nonce=world.nonces.issue(), input=b"what the verifier sent", output=output)
    assert ok.reasons == (Reason.REPORT_DATA_MISMATCH,)  # a quote answers one nonce only
    nonce, output, quote = world.run(data=b"x")
    digests = verifier.verify(quote, nonce=nonce, input_digest=hashlib.sha256(b"x").digest(),
                              output_digest=hashlib.sha256(output).digest())
    assert digests.accepted_simulated, digests.reasons


def test_report_fields_bind_arbitrary_claims(world: World) -> None:
    fields = {"node_public_key": "ab" * 32, "plan_digest": "cd" * 32, "stage": 2}
    nonce = world.nonces.issue()
    quote = world.enclave.attest(fields, nonce=nonce)
    verifier = world.verifier()
    assert verifier.verify(quote, nonce=nonce, report_fields={**fields, "stage": 3}).reasons == (
        Reason.REPORT_DATA_MISMATCH,)
    nonce = world.nonces.issue()
    quote = world.enclave.attest(fields, nonce=nonce)
    assert verifier.verify(quote, nonce=nonce, report_fields=dict(fields)).accepted_simulated


# --------------------------------------------------------------------------- simulated vs hardware


def test_simulated_acceptance_is_never_a_bare_accepted(world: World) -> None:
    result, _ = world.attest()
    assert result.verdict == "accepted (simulated)"
    assert result.accepted_simulated and not result.accepted
    strict, _ = world.attest(policy=dataclasses.replace(world.policy, require_hardware=True))
    assert strict.verdict == "rejected" and strict.reasons == (Reason.SIMULATED_EVIDENCE,)


# --------------------------------------------------------------------------- nonces


def test_an_unauthenticated_quote_does_not_burn_the_nonce(world: World) -> None:
    nonce, output, quote = world.run(data=b"data")
    verifier = world.verifier()
    forged = dataclasses.replace(quote, signature=bytes(64))  # a third party sends garbage with the nonce
    burnt = verifier.verify(forged, nonce=nonce, input=b"data", output=output)
    assert Reason.QUOTE_SIGNATURE_INVALID in burnt.reasons and Reason.NONCE_REPLAYED not in burnt.reasons
    other_output = verifier.verify(quote, nonce=nonce, input=b"data", output=b"not the output")
    assert other_output.reasons == (Reason.REPORT_DATA_MISMATCH,)  # unbound output: not authentic either
    genuine = verifier.verify(quote, nonce=nonce, input=b"data", output=output)
    assert genuine.accepted_simulated, genuine.reasons
    again = verifier.verify(quote, nonce=nonce, input=b"data", output=output)
    assert again.reasons == (Reason.NONCE_REPLAYED,)


# --------------------------------------------------------------------------- quoting enclave


def test_quoting_enclave_version_is_judged(world: World) -> None:
    old_qe = SimulatedPlatform.create(world.vendor, qe_svn=3, now=T0 - 3600)
    collateral = issue_collateral(world.vendor, platforms=[world.platform, old_qe], issue_date=T0 - 60,
                                  next_update=T0 + 86_400)
    result, _ = world.attest(old_qe.launch(segment_v1, config={"key": 7}, isv_svn=2), collateral=collateral)
    assert result.reasons == (Reason.QE_STATUS_NOT_ALLOWED,)
    assert "OutOfDate" in [c for c in result.checks if c.name == "qe_status"][0].figure


def test_quoting_enclave_identity_is_judged(world: World) -> None:
    rogue_qe = SimulatedPlatform.create(world.vendor, qe_mr_signer=b"\x66" * 32, now=T0 - 3600)
    collateral = issue_collateral(world.vendor, platforms=[world.platform, rogue_qe], issue_date=T0 - 60,
                                  next_update=T0 + 86_400)
    result, _ = world.attest(rogue_qe.launch(segment_v1, config={"key": 7}, isv_svn=2), collateral=collateral)
    assert result.reasons == (Reason.QE_IDENTITY_MISMATCH,)


# --------------------------------------------------------------------------- collateral


def test_collateral_store_is_monotonic(world: World, tmp_path: Path) -> None:
    store = CollateralStore(tmp_path / "store.json", root_public_key=world.vendor.public_key)
    v1 = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 60, next_update=T0 + 86_400,
                          tcb_evaluation_data_number=1)
    v2 = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 30, next_update=T0 + 86_400,
                          tcb_evaluation_data_number=2, revoked_platform_ids=[world.platform.platform_id])
    assert store.offer(v1) is StoreUpdate.ADOPTED
    assert store.offer(v2) is StoreUpdate.ADOPTED
    assert store.offer(v1) is StoreUpdate.STALE  # a downgrade is never adopted
    assert store.offer(v2) is StoreUpdate.UNCHANGED
    rogue = issue_collateral(SimulatedVendor.generate(), platforms=[world.platform], issue_date=T0,
                             next_update=T0 + 86_400, tcb_evaluation_data_number=99)
    assert store.offer(rogue) is StoreUpdate.UNTRUSTED
    reopened = CollateralStore(tmp_path / "store.json", root_public_key=world.vendor.public_key)
    assert reopened.current == v2  # persisted, across processes
    assert reopened.offer(v1) is StoreUpdate.STALE


def test_old_collateral_is_refused_after_a_revocation(world: World, tmp_path: Path) -> None:
    store = CollateralStore(None, root_public_key=world.vendor.public_key)
    old = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 60, next_update=T0 + 86_400,
                           tcb_evaluation_data_number=1)
    new = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 30, next_update=T0 + 86_400,
                           tcb_evaluation_data_number=2, status=TcbStatus.OUT_OF_DATE)
    store.offer(new)
    store.offer(old)  # the prover hands over the collateral from before the downgrade
    result, _ = world.attest(collateral=store)
    assert result.reasons == (Reason.TCB_STATUS_NOT_ALLOWED,)


def test_policy_minimum_tcb_evaluation_number(world: World) -> None:
    policy = dataclasses.replace(world.policy, min_tcb_evaluation_data_number=5)
    old = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 60, next_update=T0 + 86_400,
                           tcb_evaluation_data_number=4)
    result, _ = world.attest(policy=policy, collateral=old)
    assert result.reasons == (Reason.COLLATERAL_OUTDATED,)
    current = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 60, next_update=T0 + 86_400,
                               tcb_evaluation_data_number=5)
    assert world.attest(policy=policy, collateral=current)[0].accepted_simulated
    dated = dataclasses.replace(world.policy, min_collateral_issue_date=T0)
    assert world.attest(policy=dated, collateral=current)[0].reasons == (Reason.COLLATERAL_OUTDATED,)


# --------------------------------------------------------------------------- the remaining reason codes


def test_unlisted_quoting_enclave_version_is_unknown(world: World) -> None:
    from tee_sim import QeIdentity, QeTcbLevel

    only_new = QeIdentity(world.vendor.qe_mr_signer, 1, (QeTcbLevel(9, TcbStatus.UP_TO_DATE),))
    collateral = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 - 60,
                                  next_update=T0 + 86_400, qe_identity=only_new)
    result, _ = world.attest(collateral=collateral)
    assert result.reasons == (Reason.QE_TCB_LEVEL_UNKNOWN,)


def test_collateral_dated_in_the_future_and_expired_certificates(world: World) -> None:
    future = issue_collateral(world.vendor, platforms=[world.platform], issue_date=T0 + 3600,
                              next_update=T0 + 86_400)
    assert world.attest(collateral=future)[0].reasons == (Reason.COLLATERAL_NOT_YET_VALID,)
    short_lived = SimulatedPlatform.create(world.vendor, now=T0 - 7200, valid_for=3600)
    collateral = issue_collateral(world.vendor, platforms=[world.platform, short_lived], issue_date=T0 - 60,
                                  next_update=T0 + 86_400)
    result, _ = world.attest(short_lived.launch(segment_v1, config={"key": 7}, isv_svn=2), collateral=collateral)
    assert result.reasons == (Reason.PLATFORM_CERTIFICATE_EXPIRED,)
    nonce, output, quote = world.run()
    assert world.verifier().verify(quote, nonce=nonce[:15], input=b"data", output=output).reasons[0] is \
        Reason.NONCE_TOO_SHORT
