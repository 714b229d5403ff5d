"""Enclaves: measurement of code and config, run contract, misuse errors."""

from __future__ import annotations

import pytest
from enclave_code import explodes, returns_text
from tee_helpers import World, segment_v1, segment_v2

from tee_sim import DEV_SIGNER_MR_SIGNER, measure, mr_signer_of
from tee_sim.errors import EnclaveError


def test_tee_measurement_is_deterministic_and_covers_code_and_config() -> None:
    assert measure(segment_v1, {"key": 7}) == measure(segment_v1, {"key": 7})
    assert measure(segment_v1, {"b": 1, "a": 2}) == measure(segment_v1, {"a": 2, "b": 1})  # canonical JSON
    assert len({measure(segment_v1, {"key": 7}), measure(segment_v1, {"key": 8}),
                measure(segment_v2, {"key": 7}), measure(segment_v1, None)}) == 4


def test_tee_measurement_refuses_code_without_source() -> None:
    with pytest.raises(EnclaveError, match="source"):
        measure(len)  # type: ignore[arg-type]
    with pytest.raises(EnclaveError, match="module-level"):
        measure(lambda data, config: data)


def test_tee_measurement_refuses_non_json_config() -> None:
    with pytest.raises(EnclaveError, match="JSON"):
        measure(segment_v1, {"bad": object()})
    with pytest.raises(EnclaveError):
        measure(segment_v1, {"x": float("nan")})


def test_tee_enclave_identity(world: World) -> None:
    assert world.enclave.mr_enclave == measure(segment_v1, {"key": 7})
    assert world.enclave.mr_signer == DEV_SIGNER_MR_SIGNER
    assert mr_signer_of(b"\x00" * 32) != DEV_SIGNER_MR_SIGNER
    assert world.enclave.config == {"key": 7}
    with pytest.raises(TypeError):
        world.enclave.config["key"] = 8  # type: ignore[index]
    assert "segment_v1" in repr(world.enclave)


def test_tee_enclave_run_rejects_short_nonce(world: World) -> None:
    with pytest.raises(EnclaveError, match="128 bits"):
        world.enclave.run(b"x", nonce=b"\x00" * 15)


@pytest.mark.parametrize("nonce", [b"\x00" * 15, "0" * 32, None])
def test_tee_enclave_checks_nonce_before_running_and_in_attest(world: World, nonce: object) -> None:
    enclave = world.platform.launch(explodes)
    with pytest.raises(EnclaveError, match="128 bits"):
        enclave.run(b"x", nonce=nonce)  # type: ignore[arg-type]  # refused before the function ran
    with pytest.raises(EnclaveError, match="128 bits"):
        enclave.attest({"claim": "value"}, nonce=nonce)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="function ran"):
        enclave.run(b"y", nonce=world.nonces.issue())  # with a good nonce, it does run


def test_tee_enclave_output_must_be_bytes(world: World) -> None:
    enclave = world.platform.launch(returns_text)
    with pytest.raises(EnclaveError, match="bytes"):
        enclave.run(b"x", nonce=world.nonces.issue())


@pytest.mark.parametrize("kwargs", [{"isv_svn": -1}, {"isv_svn": 70000}, {"isv_prod_id": True}])
def test_tee_launch_validates_versions(world: World, kwargs: dict[str, object]) -> None:
    with pytest.raises(EnclaveError):
        world.platform.launch(segment_v1, **kwargs)  # type: ignore[arg-type]


def test_tee_platform_state_roundtrip(world: World) -> None:
    from tee_sim import SimulatedPlatform, SimulatedVendor

    platform = SimulatedPlatform.from_json(world.platform.to_json())
    assert platform.platform_certificate == world.platform.platform_certificate
    assert platform.attestation_public_key == world.platform.attestation_public_key
    blob = world.enclave.seal(b"secret")
    assert platform.launch(segment_v1, config={"key": 7}, isv_svn=2).unseal(blob) == b"secret"
    vendor = SimulatedVendor.from_json(world.vendor.to_json())
    assert vendor.public_key == world.vendor.public_key
