"""The quote's fixed binary layout, and parsing of malformed (untrusted) bytes."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tee_helpers import World

from pol.errors import InputError
from tee_sim import Collateral, Quote
from tee_sim.errors import CollateralFormatError, QuoteFormatError
from tee_sim.quote import FLAG_DEBUG, SIMULATED_QE_VENDOR_ID

BODY = 48  # the report body starts after the 48-byte header


@pytest.fixture
def raw_quote(world: World) -> bytes:
    _, quote = world.enclave.run(b"data", nonce=world.nonces.issue())
    return quote.to_bytes()


def test_tee_quote_layout_matches_sgx_report_body(world: World, raw_quote: bytes) -> None:
    quote = Quote.from_bytes(raw_quote)
    assert len(raw_quote) == Quote.SIZE == 884
    assert struct.unpack_from("<HH", raw_quote, 0) == (3, 0xED01)  # version, simulated Ed25519 key type
    assert raw_quote[12:28] == SIMULATED_QE_VENDOR_ID  # the simulation marker
    assert raw_quote[28:44] == world.platform.platform_id
    assert raw_quote[BODY : BODY + 16] == world.platform.cpu_svn
    flags = struct.unpack_from("<Q", raw_quote, BODY + 48)[0]
    assert flags & FLAG_DEBUG == 0 and flags & 0x1  # INITTED, not DEBUG
    assert raw_quote[BODY + 64 : BODY + 96] == world.enclave.mr_enclave
    assert raw_quote[BODY + 128 : BODY + 160] == world.enclave.mr_signer
    assert struct.unpack_from("<HH", raw_quote, BODY + 256) == (0, 2)  # isv_prod_id, isv_svn
    assert raw_quote[BODY + 320 : BODY + 384] == quote.body.report_data
    assert struct.unpack_from("<I", raw_quote, 432) == (448,)
    assert raw_quote[500:532] == world.platform.attestation_public_key
    assert raw_quote[532:564] == world.enclave.public_key
    ak_cert = world.platform.attestation_key_certificate
    assert raw_quote[564:726] == ak_cert.to_bytes() and raw_quote[588:620] == world.vendor.qe_mr_signer
    assert raw_quote[726:] == world.platform.platform_certificate.to_bytes()
    assert quote.simulated
    assert Quote.from_bytes(raw_quote) == quote and quote.to_bytes() == raw_quote


def test_tee_debug_flag_sits_in_attributes(world: World) -> None:
    debug = world.platform.launch(world.enclave._fn, config={"key": 7}, debug=True)
    _, quote = debug.run(b"x", nonce=world.nonces.issue())
    flags = struct.unpack_from("<Q", quote.to_bytes(), BODY + 48)[0]
    assert flags & FLAG_DEBUG


def _patched(raw: bytes, offset: int, new: bytes) -> bytes:
    return raw[:offset] + new + raw[offset + len(new) :]


MALFORMED = {
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[:-1],
    "padded": lambda raw: raw + b"\x00",
    "header_only": lambda raw: raw[:48],
    "bad_version": lambda raw: _patched(raw, 0, struct.pack("<H", 4)),
    "real_dcap_ecdsa_key_type": lambda raw: _patched(raw, 2, struct.pack("<H", 2)),
    "tdx_tee_type": lambda raw: _patched(raw, 4, struct.pack("<I", 0x81)),
    "intel_qe_vendor_id": lambda raw: _patched(raw, 12, bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")),
    "nonzero_user_data_tail": lambda raw: _patched(raw, 44, b"\x01"),
    "nonzero_reserved1": lambda raw: _patched(raw, BODY + 20, b"\x01"),
    "nonzero_reserved4": lambda raw: _patched(raw, BODY + 262, b"\x01"),
    "not_initted": lambda raw: _patched(raw, BODY + 48, b"\x04"),
    "bad_sig_data_len": lambda raw: _patched(raw, 432, struct.pack("<I", 447)),
    "bad_ak_cert_magic": lambda raw: _patched(raw, 564, b"XXXX"),
    "old_ak_cert_version": lambda raw: _patched(raw, 564 + 4, struct.pack("<H", 1)),
    "bad_platform_cert_version": lambda raw: _patched(raw, 726 + 4, struct.pack("<H", 9)),
    "platform_cert_inverted_validity": lambda raw: _patched(raw, 726 + 78, struct.pack("<QQ", 2, 1)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_tee_parse_rejects_malformed_quote(raw_quote: bytes, name: str) -> None:
    bad = MALFORMED[name](raw_quote)
    assert bad != raw_quote
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(bad)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    assert str(info.value)  # a message that says what was wrong


def test_tee_parse_rejects_non_bytes() -> None:
    with pytest.raises(QuoteFormatError):
        Quote.from_bytes("not bytes")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000))
def test_tee_parse_random_bytes_gives_typed_error(data: bytes) -> None:
    with pytest.raises(QuoteFormatError):
        Quote.from_bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 849), st.integers(0, 255)), min_size=1, max_size=8))
def test_tee_parse_mutated_quote_never_crashes(raw_quote: bytes, edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(raw_quote)
    for offset, value in edits:
        mutated[offset] = value
    try:
        parsed = Quote.from_bytes(bytes(mutated))
    except QuoteFormatError:
        return
    assert parsed.to_bytes() == bytes(mutated)  # whatever parses re-serialises to the same bytes


def test_tee_collateral_roundtrip(world: World) -> None:
    raw = world.collateral.to_bytes()
    parsed = Collateral.from_bytes(raw)
    assert parsed == world.collateral
    assert parsed.verify(world.vendor.public_key)
    assert json.loads(raw)["body"]["simulated"] is True


@pytest.mark.parametrize(
    "edit",
    [
        "not json",
        "duplicate_key",
        "missing_body",
        "bad_status",
        "short_fmspc",
        "extra_field",
        "nan",
        "overflow_to_inf",
        "bool_for_int",
        "missing_evaluation_number",
        "negative_evaluation_number",
        "bad_qe_status",
        "short_qe_signer",
        "old_schema",
    ],
)
def test_tee_collateral_parse_rejects_malformed(world: World, edit: str) -> None:
    doc = json.loads(world.collateral.to_bytes())
    body = doc["body"]
    if edit == "not json":
        raw = b"\x80not json"
    elif edit == "duplicate_key":
        raw = world.collateral.to_bytes().replace(b'{"body":', b'{"signature":"00","body":', 1)
    else:
        if edit == "missing_body":
            del doc["body"]
        elif edit == "bad_status":
            body["tcb_info"][0]["tcb_levels"][0]["tcb_status"] = "Fine"
        elif edit == "short_fmspc":
            body["tcb_info"][0]["fmspc"] = "00"
        elif edit == "extra_field":
            body["trust_me"] = True
        elif edit == "nan":
            body["next_update"] = float("nan")
        elif edit == "overflow_to_inf":
            body["trust_me"] = "OVERFLOW"  # in a field no type check looks at: only the parser can refuse it
        elif edit == "bool_for_int":
            body["issue_date"] = True
        elif edit == "missing_evaluation_number":
            del body["tcb_evaluation_data_number"]
        elif edit == "negative_evaluation_number":
            body["tcb_evaluation_data_number"] = -1
        elif edit == "bad_qe_status":
            body["qe_identity"]["tcb_levels"][0]["tcb_status"] = "Fine"
        elif edit == "short_qe_signer":
            body["qe_identity"]["mr_signer"] = "00"
        elif edit == "old_schema":
            body["schema_version"] = 1
        raw = json.dumps(doc).encode().replace(b'"OVERFLOW"', b"1e999")
    with pytest.raises(CollateralFormatError) as info:
        Collateral.from_bytes(raw)
    if edit == "overflow_to_inf":
        assert b"1e999" in raw and "out of range" in str(info.value)
