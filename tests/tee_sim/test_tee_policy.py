"""Policy: measurements pinned by default, strict files, root pinned from configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tee_helpers import T0, World, segment_v1

from tee_sim import (
    AttestationPolicy,
    AttestationVerifier,
    Reason,
    SimulatedPlatform,
    SimulatedVendor,
    TcbStatus,
    issue_collateral,
    read_policy_file,
    write_policy_file,
)
from tee_sim.errors import PolicyError
from tee_sim.policy import UnsafePolicyWarning


def test_tee_policy_refuses_to_pin_nothing() -> None:
    with pytest.raises(PolicyError, match="pins no measurement"):
        AttestationPolicy()


def test_tee_policy_defaults_are_strict(world: World) -> None:
    policy = AttestationPolicy(allowed_mr_enclave=frozenset({world.enclave.mr_enclave}))
    assert policy.allowed_tcb_statuses == frozenset({TcbStatus.UP_TO_DATE})
    assert policy.allow_debug is False
    assert policy.allow_any_measurement is False


def test_tee_policy_allow_any_measurement_is_loud(world: World) -> None:
    with pytest.warns(UnsafePolicyWarning):
        policy = AttestationPolicy(allow_any_measurement=True)
    other = world.platform.launch(segment_v1, config={"anything": 1}, isv_svn=5)
    result, _ = world.attest(other, policy=policy)
    assert result.accepted_simulated
    measurement = [c for c in result.checks if c.name == "measurement"]
    assert measurement and measurement[0].figure == "ANY" and "UNSAFE" in measurement[0].detail


def test_tee_policy_rejects_contradictions_and_bad_values(world: World) -> None:
    with pytest.raises(PolicyError):
        AttestationPolicy(allowed_mr_enclave=frozenset({world.enclave.mr_enclave}), allow_any_measurement=True)
    with pytest.raises(PolicyError):
        AttestationPolicy(allowed_mr_enclave=frozenset({b"short"}))
    with pytest.raises(PolicyError):
        AttestationPolicy(allowed_mr_enclave=frozenset({world.enclave.mr_enclave}),
                          allowed_tcb_statuses=frozenset({TcbStatus.REVOKED}))
    with pytest.raises(PolicyError):
        AttestationPolicy(allowed_mr_enclave=frozenset({world.enclave.mr_enclave}),
                          allowed_tcb_statuses=frozenset({"Fine"}))  # type: ignore[arg-type]


def test_tee_policy_file_roundtrip(world: World, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    write_policy_file(path, root_public_key=world.vendor.public_key, policy=world.policy)
    root, policy = read_policy_file(path)
    assert root == world.vendor.public_key
    assert policy == world.policy


@pytest.mark.parametrize(
    "edit",
    [
        {"allowed_mr_enclave": []},  # pins nothing
        {"allowed_mr_enclav": ["00" * 32]},  # typo: unknown field
        {"root_public_key": "00" * 31},
        {"allow_debug": "no"},
        {"min_isv_svn": -1},
        {"schema_version": 2},
        {"allowed_mr_enclave": "00" * 32},
        {"require_hardware": "yes"},
        {"min_tcb_evaluation_data_number": -1},
    ],
)
def test_tee_policy_file_malformed_is_policy_error(world: World, tmp_path: Path, edit: dict[str, object]) -> None:
    path = tmp_path / "policy.json"
    write_policy_file(path, root_public_key=world.vendor.public_key, policy=world.policy)
    doc = json.loads(path.read_text())
    doc.update(edit)
    path.write_text(json.dumps(doc))
    with pytest.raises(PolicyError):
        read_policy_file(path)


def test_tee_policy_file_missing_is_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        read_policy_file(tmp_path / "absent.json")


def test_tee_verifier_pins_root_from_policy_file_not_evidence(world: World, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    write_policy_file(path, root_public_key=world.vendor.public_key, policy=world.policy)
    # Evidence from a rogue vendor carries its own (self-consistent) chain and collateral.
    rogue_vendor = SimulatedVendor.generate()
    rogue = SimulatedPlatform.create(rogue_vendor, now=T0 - 10)
    rogue_collateral = issue_collateral(rogue_vendor, platforms=[rogue], issue_date=T0 - 10, next_update=T0 + 100)
    verifier = AttestationVerifier.from_policy_file(path, collateral=rogue_collateral, nonces=world.nonces,
                                                    clock=world.clock)
    result, _ = world.attest(rogue.launch(segment_v1, config={"key": 7}, isv_svn=2), verifier=verifier)
    assert result.verdict == "rejected"
    assert set(result.reasons) == {Reason.COLLATERAL_SIGNATURE_INVALID, Reason.PLATFORM_CERTIFICATE_UNTRUSTED}
