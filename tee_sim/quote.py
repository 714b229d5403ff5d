"""The quote: a fixed binary layout modelled on the Intel SGX DCAP v3 quote.

``Quote.to_bytes()`` is the only serialisation (``struct``, little-endian; never pickle) and
``Quote.from_bytes()`` parses untrusted bytes, raising :class:`QuoteFormatError` on anything
malformed. Parsing checks *form* only; signatures and policy are the verifier's job.

Layout (884 bytes)::

    offset  size  field
    0       48    header        version u16 (=3) | att_key_type u16 (=0xED01, "Ed25519,
                                simulated"; real DCAP uses 2/3 for ECDSA) | tee_type u32 (=0,
                                SGX) | qe_svn u16 | pce_svn u16 | qe_vendor_id (16) =
                                b"POL-TEE-SIM-ONLY" | user_data (20) = platform_id (16) + 4 zero
    48      384   report body   the SGX REPORT body, byte for byte (see :class:`ReportBody`)
    432     4     sig_data_len  u32 (=448)
    436     64    signature     Ed25519 by the attestation key over bytes [0, 432)
    500     32    attestation_public_key
    532     32    enclave_public_key  (X25519; bound by report_data, not signed directly)
    564     162   attestation key certificate  (see keys.AttestationKeyCertificate)
    726     158   platform certificate         (see keys.PlatformCertificate)

The ``att_key_type`` and ``qe_vendor_id`` values mark the evidence as SIMULATED: a real DCAP
verifier rejects the unknown key type, and this package accepts nothing else.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from tee_sim.errors import CertificateFormatError, QuoteFormatError
from tee_sim.keys import AttestationKeyCertificate, PlatformCertificate

QUOTE_VERSION = 3
ATT_KEY_TYPE_ED25519_SIMULATED = 0xED01
TEE_TYPE_SGX = 0x00000000
#: The QE vendor id that marks a quote as produced by this simulation.
SIMULATED_QE_VENDOR_ID = b"POL-TEE-SIM-ONLY"

# SGX attribute flags (sgx_attributes_t.flags).
FLAG_INITTED = 0x01
FLAG_DEBUG = 0x02
FLAG_MODE64BIT = 0x04
XFRM_LEGACY = 0x03  # x87 + SSE


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header (DCAP ``sgx_quote_header_t``)."""

    qe_svn: int
    pce_svn: int
    platform_id: bytes
    version: int = QUOTE_VERSION
    att_key_type: int = ATT_KEY_TYPE_ED25519_SIMULATED
    tee_type: int = TEE_TYPE_SGX
    qe_vendor_id: bytes = SIMULATED_QE_VENDOR_ID

    _LAYOUT = struct.Struct("<HHIHH16s20s")
    SIZE = _LAYOUT.size  # 48

    @property
    def simulated(self) -> bool:
        """True when the header carries the simulation markers."""
        return self.att_key_type == ATT_KEY_TYPE_ED25519_SIMULATED and self.qe_vendor_id == SIMULATED_QE_VENDOR_ID

    def to_bytes(self) -> bytes:
        user_data = self.platform_id + b"\x00" * 4
        return self._LAYOUT.pack(
            self.version, self.att_key_type, self.tee_type, self.qe_svn, self.pce_svn, self.qe_vendor_id, user_data
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> QuoteHeader:
        if len(raw) != cls.SIZE:
            raise QuoteFormatError(f"quote header: expected {cls.SIZE} bytes, found {len(raw)}")
        version, akt, tee, qe_svn, pce_svn, vendor, user_data = cls._LAYOUT.unpack(raw)
        if version != QUOTE_VERSION:
            raise QuoteFormatError(f"quote header: unsupported version {version}, expected {QUOTE_VERSION}")
        if akt != ATT_KEY_TYPE_ED25519_SIMULATED:
            raise QuoteFormatError(
                f"quote header: attestation key type 0x{akt:04x} is not the simulated Ed25519 type "
                f"0x{ATT_KEY_TYPE_ED25519_SIMULATED:04x} (is this a real hardware quote? use a real verifier)"
            )
        if tee != TEE_TYPE_SGX:
            raise QuoteFormatError(f"quote header: tee_type 0x{tee:08x} is not SGX (0x00000000)")
        if vendor != SIMULATED_QE_VENDOR_ID:
            raise QuoteFormatError(f"quote header: qe_vendor_id {vendor.hex()} is not the simulation marker")
        if user_data[16:] != b"\x00" * 4:
            raise QuoteFormatError("quote header: user_data bytes 16..20 must be zero")
        return cls(qe_svn=qe_svn, pce_svn=pce_svn, platform_id=user_data[:16])


@dataclass(frozen=True)
class ReportBody:
    """The 384-byte SGX report body (``sgx_report_body_t``), field for field.

    Reserved fields are always zero and are not stored; parsing rejects nonzero ones.
    ``attributes`` is the flags word (``FLAG_DEBUG`` = 0x2); ``xfrm`` the second word.
    """

    cpu_svn: bytes
    attributes: int
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes
    xfrm: int = XFRM_LEGACY
    misc_select: int = 0
    isv_ext_prod_id: bytes = b"\x00" * 16
    config_id: bytes = b"\x00" * 64
    config_svn: int = 0
    isv_family_id: bytes = b"\x00" * 16

    # cpu_svn, misc_select, reserved1, isv_ext_prod_id, attributes(flags, xfrm), mr_enclave,
    # reserved2, mr_signer, reserved3, config_id, isv_prod_id, isv_svn, config_svn, reserved4,
    # isv_family_id, report_data
    _LAYOUT = struct.Struct("<16sI12s16sQQ32s32s32s32s64sHHH42s16s64s")
    SIZE = _LAYOUT.size  # 384

    @property
    def debug(self) -> bool:
        """True when the DEBUG attribute is set (enclave memory is readable by the host)."""
        return bool(self.attributes & FLAG_DEBUG)

    def to_bytes(self) -> bytes:
        return self._LAYOUT.pack(
            self.cpu_svn,
            self.misc_select,
            b"\x00" * 12,
            self.isv_ext_prod_id,
            self.attributes,
            self.xfrm,
            self.mr_enclave,
            b"\x00" * 32,
            self.mr_signer,
            b"\x00" * 32,
            self.config_id,
            self.isv_prod_id,
            self.isv_svn,
            self.config_svn,
            b"\x00" * 42,
            self.isv_family_id,
            self.report_data,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ReportBody:
        if len(raw) != cls.SIZE:
            raise QuoteFormatError(f"report body: expected {cls.SIZE} bytes, found {len(raw)}")
        (
            cpu_svn,
            misc_select,
            r1,
            ext_prod,
            flags,
            xfrm,
            mr_enclave,
            r2,
            mr_signer,
            r3,
            config_id,
            prod_id,
            svn,
            config_svn,
            r4,
            family,
            report_data,
        ) = cls._LAYOUT.unpack(raw)
        for name, reserved in (("reserved1", r1), ("reserved2", r2), ("reserved3", r3), ("reserved4", r4)):
            if any(reserved):
                raise QuoteFormatError(f"report body: {name} must be zero")
        if not flags & FLAG_INITTED:
            raise QuoteFormatError("report body: INITTED attribute is not set")
        return cls(
            cpu_svn=cpu_svn,
            attributes=flags,
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            isv_prod_id=prod_id,
            isv_svn=svn,
            report_data=report_data,
            xfrm=xfrm,
            misc_select=misc_select,
            isv_ext_prod_id=ext_prod,
            config_id=config_id,
            config_svn=config_svn,
            isv_family_id=family,
        )


@dataclass(frozen=True)
class Quote:
    """A parsed (not yet verified) quote. See the module docstring for the byte layout."""

    header: QuoteHeader
    body: ReportBody
    signature: bytes
    attestation_public_key: bytes
    enclave_public_key: bytes
    attestation_key_certificate: AttestationKeyCertificate
    platform_certificate: PlatformCertificate

    SIGNATURE_DATA_SIZE = 64 + 32 + 32 + AttestationKeyCertificate.SIZE + PlatformCertificate.SIZE  # 448
    SIGNED_SIZE = QuoteHeader.SIZE + ReportBody.SIZE  # 432
    SIZE = SIGNED_SIZE + 4 + SIGNATURE_DATA_SIZE  # 884

    @property
    def simulated(self) -> bool:
        """Always True for a quote this package parsed: it carries the simulation marker."""
        return self.header.simulated

    def signed_bytes(self) -> bytes:
        """The bytes the attestation key signs: header || report body."""
        return self.header.to_bytes() + self.body.to_bytes()

    def to_bytes(self) -> bytes:
        return (
            self.signed_bytes()
            + struct.pack("<I", self.SIGNATURE_DATA_SIZE)
            + self.signature
            + self.attestation_public_key
            + self.enclave_public_key
            + self.attestation_key_certificate.to_bytes()
            + self.platform_certificate.to_bytes()
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Quote:
        """Parse untrusted bytes; raise :class:`QuoteFormatError` if they are malformed."""
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise QuoteFormatError(f"quote: expected bytes, found {type(raw).__name__}")
        raw = bytes(raw)
        if len(raw) != cls.SIZE:
            raise QuoteFormatError(f"quote: expected {cls.SIZE} bytes, found {len(raw)} (truncated or padded?)")
        header = QuoteHeader.from_bytes(raw[: QuoteHeader.SIZE])
        body = ReportBody.from_bytes(raw[QuoteHeader.SIZE : cls.SIGNED_SIZE])
        (sig_len,) = struct.unpack_from("<I", raw, cls.SIGNED_SIZE)
        if sig_len != cls.SIGNATURE_DATA_SIZE:
            raise QuoteFormatError(f"quote: sig_data_len is {sig_len}, expected {cls.SIGNATURE_DATA_SIZE}")
        pos = cls.SIGNED_SIZE + 4
        signature, pos = raw[pos : pos + 64], pos + 64
        ak_pub, pos = raw[pos : pos + 32], pos + 32
        enclave_pub, pos = raw[pos : pos + 32], pos + 32
        ak_cert_raw, pos = raw[pos : pos + AttestationKeyCertificate.SIZE], pos + AttestationKeyCertificate.SIZE
        platform_cert_raw = raw[pos:]
        try:
            ak_cert = AttestationKeyCertificate.from_bytes(ak_cert_raw)
            platform_cert = PlatformCertificate.from_bytes(platform_cert_raw)
        except CertificateFormatError as exc:
            raise QuoteFormatError(f"quote: {exc}") from None
        return cls(header, body, signature, ak_pub, enclave_pub, ak_cert, platform_cert)


__all__ = [
    "Quote",
    "QuoteHeader",
    "ReportBody",
    "FLAG_DEBUG",
    "FLAG_INITTED",
    "FLAG_MODE64BIT",
    "SIMULATED_QE_VENDOR_ID",
    "ATT_KEY_TYPE_ED25519_SIMULATED",
    "QUOTE_VERSION",
]


#: Report data kinds: a quote from ``Enclave.run`` binds input and output digests; one from
#: ``Enclave.attest`` binds caller-chosen claims. The kind is hashed in, so neither passes as the other.
KIND_RUN = "run"
KIND_CLAIMS = "claims"
REPORT_DATA_CONTEXT = b"pol-tee-sim/report-data/v2"
MAX_REPORT_FIELDS = 64
_MAX_FIELD_TEXT = 4096


def sha256(data: bytes) -> bytes:
    """SHA-256 of bytes (what report data binds of an enclave's input and output)."""
    return hashlib.sha256(bytes(data)).digest()


def run_fields(input_digest: bytes, output_digest: bytes) -> dict[str, str]:
    """The report fields of an ``Enclave.run`` quote: SHA-256 of the input and of the output."""
    for what, digest in (("input", input_digest), ("output", output_digest)):
        if len(digest) != 32:
            raise QuoteFormatError(f"{what} digest must be 32 bytes (SHA-256), found {len(digest)}")
    return {"input_sha256": bytes(input_digest).hex(), "output_sha256": bytes(output_digest).hex()}


def check_fields(fields: Mapping[str, object]) -> dict[str, str | int]:
    """Validate report fields: at most 64, str keys, values str (<= 4096 chars) or int (not bool)."""
    if not isinstance(fields, Mapping) or len(fields) > MAX_REPORT_FIELDS:
        raise QuoteFormatError(f"report fields must be a mapping of at most {MAX_REPORT_FIELDS} entries")
    out: dict[str, str | int] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise QuoteFormatError(f"report field names must be strings of 1..64 characters, found {key!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise QuoteFormatError(f"report field {key!r} must be a string or an integer")
        if isinstance(value, str) and len(value) > _MAX_FIELD_TEXT:
            raise QuoteFormatError(f"report field {key!r} is longer than {_MAX_FIELD_TEXT} characters")
        out[key] = value
    return out


def expected_report_data(enclave_public_key: bytes, nonce: bytes, kind: str, fields: Mapping[str, object]) -> bytes:
    """``report_data = SHA-512(lp(context) || enclave key (32) || lp(nonce) || lp(kind) ||
    SHA-256(canonical_json(fields)))``: 64 bytes, filling the field; ``lp`` is a u64 length prefix."""
    from tee_sim._encoding import canonical_json

    def lp(part: bytes) -> bytes:
        return struct.pack("<Q", len(part)) + part

    body = (lp(REPORT_DATA_CONTEXT) + bytes(enclave_public_key) + lp(bytes(nonce)) + lp(kind.encode())
            + sha256(canonical_json(check_fields(fields))))
    return hashlib.sha512(body).digest()


__all__ += ["KIND_RUN", "KIND_CLAIMS", "sha256", "run_fields", "check_fields", "expected_report_data"]
