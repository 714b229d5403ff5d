"""The simulated key hierarchy: vendor root -> platform certificate -> attestation key.

This mirrors Intel SGX DCAP, with every key Ed25519 (PyNaCl) instead of ECDSA P-256:

=====================  ==============================  =====================================
SGX DCAP               this simulation                 signed by
=====================  ==============================  =====================================
Intel SGX Root CA      :class:`SimulatedVendor`        (self; pinned by the verifier)
PCK certificate        :class:`PlatformCertificate`    vendor root
QE report + QE auth    :class:`AttestationKeyCertificate`  platform (PCK) key
quote signature        ``Quote.signature``             attestation key
=====================  ==============================  =====================================

Certificates have a fixed binary layout (``struct``, little-endian) documented on each class
and in docs/TEE.md. The signature covers every byte before it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from tee_sim._encoding import from_hex, require, strict_json_loads
from tee_sim.errors import CertificateFormatError, StateError

ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

#: Domain-separation prefix for everything the vendor root signs besides platform certificates.
COLLATERAL_SIGNING_CONTEXT = b"pol-tee-sim/collateral/v2\x00"
#: Derives the vendor's quoting-enclave signer identity from its root key (a simulation choice).
QE_SIGNER_CONTEXT = b"pol-tee-sim/quoting-enclave-signer/v1\x00"
#: The quoting enclave's product id (Intel's QE has ISVPRODID 1).
QE_ISV_PROD_ID = 1


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` under ``public_key``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError, ValueError):
        return False
    return True


class SimulatedVendor:
    """The simulated hardware vendor (Intel, AWS, NVIDIA): owns the root signing key.

    Verifiers pin :attr:`public_key` in their own configuration; it never comes from evidence.
    """

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._key = signing_key

    @classmethod
    def generate(cls) -> SimulatedVendor:
        """A fresh vendor root with a random key."""
        return cls(nacl.signing.SigningKey.generate())

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 root public key that verifiers pin."""
        return bytes(self._key.verify_key)

    @property
    def qe_mr_signer(self) -> bytes:
        """The ``mr_signer`` of this vendor's quoting enclave (listed in its collateral's QE identity)."""
        return hashlib.sha256(QE_SIGNER_CONTEXT + self.public_key).digest()

    def sign(self, message: bytes) -> bytes:
        """Sign raw bytes with the root key (used for certificates and collateral)."""
        return self._key.sign(message).signature

    def to_json(self) -> dict[str, object]:
        """State for a file (contains the secret root key; a simulation only)."""
        return {"schema_version": 1, "kind": "pol-tee-sim-vendor", "signing_key": bytes(self._key).hex()}

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, object]) -> SimulatedVendor:
        obj = strict_json_loads(data, StateError, "vendor state") if not isinstance(data, dict) else data
        if require(obj, "kind", str, StateError, "vendor state") != "pol-tee-sim-vendor":
            raise StateError("vendor state: kind is not 'pol-tee-sim-vendor'")
        seed = from_hex(require(obj, "signing_key", str, StateError, "vendor state"), 32, StateError, "signing_key")
        return cls(nacl.signing.SigningKey(seed))


@dataclass(frozen=True)
class PlatformCertificate:
    """The PCK-certificate analogue: binds a platform's identity and TCB to its platform key.

    Layout (158 bytes, little-endian): ``magic "SIMP" (4) | version u16 | platform_id (16) |
    fmspc (6) | pce_svn u16 | cpu_svn (16) | pck_public_key (32) | not_before u64 |
    not_after u64 | signature (64)``; the signature (vendor root) covers the first 94 bytes.
    """

    platform_id: bytes
    fmspc: bytes
    pce_svn: int
    cpu_svn: bytes
    pck_public_key: bytes
    not_before: int
    not_after: int
    signature: bytes = b"\x00" * ED25519_SIGNATURE_BYTES

    MAGIC = b"SIMP"
    VERSION = 1
    _TBS = struct.Struct("<4sH16s6sH16s32sQQ")
    SIZE = _TBS.size + ED25519_SIGNATURE_BYTES

    def tbs_bytes(self) -> bytes:
        """The to-be-signed part."""
        return self._TBS.pack(
            self.MAGIC,
            self.VERSION,
            self.platform_id,
            self.fmspc,
            self.pce_svn,
            self.cpu_svn,
            self.pck_public_key,
            self.not_before,
            self.not_after,
        )

    def to_bytes(self) -> bytes:
        return self.tbs_bytes() + self.signature

    @classmethod
    def from_bytes(cls, raw: bytes) -> PlatformCertificate:
        if len(raw) != cls.SIZE:
            raise CertificateFormatError(f"platform certificate: expected {cls.SIZE} bytes, found {len(raw)}")
        magic, version, pid, fmspc, pce_svn, cpu_svn, pck, nb, na = cls._TBS.unpack_from(raw)
        if magic != cls.MAGIC:
            raise CertificateFormatError(f"platform certificate: bad magic {magic!r}, expected {cls.MAGIC!r}")
        if version != cls.VERSION:
            raise CertificateFormatError(f"platform certificate: unsupported version {version}, expected {cls.VERSION}")
        if nb > na:
            raise CertificateFormatError("platform certificate: not_before is after not_after")
        return cls(pid, fmspc, pce_svn, cpu_svn, pck, nb, na, raw[cls._TBS.size :])

    def verify(self, root_public_key: bytes) -> bool:
        """True when the vendor root ``root_public_key`` signed this certificate."""
        return verify_signature(root_public_key, self.tbs_bytes(), self.signature)


@dataclass(frozen=True)
class AttestationKeyCertificate:
    """The QE-report analogue: the platform (PCK) key certifies the quoting enclave and its key.

    It names the quoting enclave that holds the attestation key (its ``mr_signer``,
    ``isv_prod_id`` and security version ``qe_svn``), which the verifier judges against the
    vendor's QE identity in the collateral, as DCAP verifiers judge the QE report.

    Layout (162 bytes): ``magic "SIMA" (4) | version u16 (=2) | platform_id (16) | qe_svn u16 |
    qe_mr_signer (32) | qe_isv_prod_id u16 | attestation_public_key (32) | issued_at u64 |
    signature (64)``; the signature (platform PCK key) covers the first 98 bytes.
    """

    platform_id: bytes
    qe_svn: int
    attestation_public_key: bytes
    issued_at: int
    qe_mr_signer: bytes = b"\x00" * 32
    qe_isv_prod_id: int = 0
    signature: bytes = b"\x00" * ED25519_SIGNATURE_BYTES

    MAGIC = b"SIMA"
    VERSION = 2
    _TBS = struct.Struct("<4sH16sH32sH32sQ")
    SIZE = _TBS.size + ED25519_SIGNATURE_BYTES

    def tbs_bytes(self) -> bytes:
        return self._TBS.pack(self.MAGIC, self.VERSION, self.platform_id, self.qe_svn, self.qe_mr_signer,
                              self.qe_isv_prod_id, self.attestation_public_key, self.issued_at)

    def to_bytes(self) -> bytes:
        return self.tbs_bytes() + self.signature

    @classmethod
    def from_bytes(cls, raw: bytes) -> AttestationKeyCertificate:
        if len(raw) != cls.SIZE:
            raise CertificateFormatError(f"attestation key certificate: expected {cls.SIZE} bytes, found {len(raw)}")
        magic, version, pid, qe_svn, qe_mr_signer, qe_prod, ak, issued = cls._TBS.unpack_from(raw)
        if magic != cls.MAGIC:
            raise CertificateFormatError(f"attestation key certificate: bad magic {magic!r}, expected {cls.MAGIC!r}")
        if version != cls.VERSION:
            raise CertificateFormatError(
                f"attestation key certificate: unsupported version {version}, expected {cls.VERSION}"
            )
        return cls(pid, qe_svn, ak, issued, qe_mr_signer, qe_prod, raw[cls._TBS.size :])

    def verify(self, pck_public_key: bytes) -> bool:
        """True when the platform key ``pck_public_key`` signed this certificate."""
        return verify_signature(pck_public_key, self.tbs_bytes(), self.signature)


__all__ = [
    "SimulatedVendor",
    "PlatformCertificate",
    "AttestationKeyCertificate",
    "verify_signature",
    "COLLATERAL_SIGNING_CONTEXT",
    "QE_ISV_PROD_ID",
]
