"""Sealing: MRENCLAVE binds to the code, MRSIGNER to the signer with svn ordering."""

from __future__ import annotations

import nacl.signing
import pytest
from tee_helpers import T0, World, segment_v1, segment_v2

from tee_sim import SealingError, SealPolicy, SimulatedPlatform
from tee_sim.sealing import SealedHeader, derive_seal_key, hkdf_sha256

SECRET = b"sealed model weights"


def test_tee_hkdf_matches_rfc5869_vector() -> None:
    okm = hkdf_sha256(
        bytes([0x0B] * 22), salt=bytes(range(0x0D)), info=bytes(range(0xF0, 0xFA)), length=42
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_tee_seal_roundtrip_and_fresh_key_per_blob(world: World) -> None:
    a, b = world.enclave.seal(SECRET), world.enclave.seal(SECRET)
    assert a != b and SECRET not in a
    assert world.enclave.unseal(a) == SECRET == world.enclave.unseal(b)
    assert SealedHeader.from_bytes(a).policy is SealPolicy.MRENCLAVE


def test_tee_mrenclave_sealed_data_refuses_changed_code(world: World) -> None:
    blob = world.enclave.seal(SECRET)
    restarted = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=2)
    assert restarted.unseal(blob) == SECRET  # same code, same config, same platform
    for changed in (
        world.platform.launch(segment_v2, config={"key": 7}, isv_svn=2),
        world.platform.launch(segment_v1, config={"key": 8}, isv_svn=2),
    ):
        with pytest.raises(SealingError):
            changed.unseal(blob)


def test_tee_mrsigner_sealed_data_follows_signer_upward_only(world: World) -> None:
    signer = nacl.signing.SigningKey.generate()
    v2 = world.platform.launch(segment_v1, signer=signer, isv_prod_id=1, isv_svn=2)
    blob = v2.seal(SECRET, policy=SealPolicy.MRSIGNER)
    upgraded = world.platform.launch(segment_v2, signer=signer, isv_prod_id=1, isv_svn=3)
    assert upgraded.unseal(blob) == SECRET  # new code, same signer, higher svn
    downgraded = world.platform.launch(segment_v1, signer=signer, isv_prod_id=1, isv_svn=1)
    with pytest.raises(SealingError, match="isv_svn"):
        downgraded.unseal(blob)
    # and data sealed by the upgraded enclave stays out of reach of v2
    newer_blob = upgraded.seal(SECRET, policy=SealPolicy.MRSIGNER)
    with pytest.raises(SealingError):
        v2.unseal(newer_blob)


def test_tee_mrsigner_sealed_data_refuses_other_signer_or_product(world: World) -> None:
    signer = nacl.signing.SigningKey.generate()
    blob = world.platform.launch(segment_v1, signer=signer, isv_prod_id=1, isv_svn=2).seal(
        SECRET, policy=SealPolicy.MRSIGNER
    )
    for intruder in (
        world.platform.launch(segment_v1, isv_prod_id=1, isv_svn=2),  # dev signer
        world.platform.launch(segment_v1, signer=signer, isv_prod_id=2, isv_svn=2),
    ):
        with pytest.raises(SealingError):
            intruder.unseal(blob)


def test_tee_sealed_data_is_bound_to_the_platform(world: World) -> None:
    blob = world.enclave.seal(SECRET)
    other = SimulatedPlatform.create(world.vendor, now=T0)
    with pytest.raises(SealingError):
        other.launch(segment_v1, config={"key": 7}, isv_svn=2).unseal(blob)


def test_tee_debug_enclave_cannot_unseal_production_data(world: World) -> None:
    blob = world.enclave.seal(SECRET, policy=SealPolicy.MRENCLAVE)
    debug = world.platform.launch(segment_v1, config={"key": 7}, isv_svn=2, debug=True)
    with pytest.raises(SealingError):
        debug.unseal(blob)


def test_tee_sealed_blob_tampering_is_detected(world: World) -> None:
    blob = bytearray(world.enclave.seal(SECRET, policy=SealPolicy.MRSIGNER))
    for offset in (8, 10, 20, len(blob) - 1):  # isv_svn, key_id, ciphertext
        edited = bytearray(blob)
        edited[offset] ^= 0x01
        with pytest.raises(SealingError):
            world.enclave.unseal(bytes(edited))


@pytest.mark.parametrize("blob", [b"", b"SIMS", b"XXXX" + bytes(100), b"SIMS\x02\x00" + bytes(100),
                                  b"SIMS\x01\x00\x09\x00" + bytes(100)])
def test_tee_malformed_sealed_blob_is_a_typed_error(world: World, blob: bytes) -> None:
    with pytest.raises(SealingError):
        world.enclave.unseal(blob)


def test_tee_seal_keys_differ_per_svn_policy_and_debug() -> None:
    base = {"mr_enclave": b"\x01" * 32, "mr_signer": b"\x02" * 32, "isv_prod_id": 0, "key_id": b"\x00" * 32}
    keys = {
        derive_seal_key(b"s" * 32, policy=policy, isv_svn=svn, debug=debug, **base)  # type: ignore[arg-type]
        for policy in SealPolicy
        for svn in (0, 1)
        for debug in (False, True)
    }
    assert len(keys) == 8
