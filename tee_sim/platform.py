"""A simulated TEE platform: one machine with its certified keys, quoting and sealing.

It plays the CPU and its quoting enclave: it launches enclaves (measuring them), signs their
reports into quotes with its attestation key, and derives their sealing keys.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import nacl.signing

from tee_sim._encoding import from_hex, require, strict_json_loads
from tee_sim.errors import CertificateFormatError, SealingError, StateError
from tee_sim.keys import QE_ISV_PROD_ID, AttestationKeyCertificate, PlatformCertificate, SimulatedVendor
from tee_sim.quote import (
    FLAG_DEBUG,
    FLAG_INITTED,
    FLAG_MODE64BIT,
    Quote,
    QuoteHeader,
    ReportBody,
)
from tee_sim.sealing import SealPolicy, derive_seal_key

if TYPE_CHECKING:
    from tee_sim.enclave import Enclave
    from tee_sim.measurement import CodeImage

DEFAULT_FMSPC = bytes.fromhex("00906ed50000")
DEFAULT_CPU_SVN = bytes([4, 4, 2, 4, 1, 128, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0])
DEFAULT_PCE_SVN = 13
DEFAULT_QE_SVN = 8
DEFAULT_CERT_VALIDITY_SECONDS = 10 * 365 * 24 * 3600


class SimulatedPlatform:
    """One simulated TEE machine. Create with :meth:`create`; launch enclaves with :meth:`launch`."""

    def __init__(
        self,
        *,
        pck_key: nacl.signing.SigningKey,
        platform_certificate: PlatformCertificate,
        attestation_key: nacl.signing.SigningKey,
        attestation_key_certificate: AttestationKeyCertificate,
        seal_secret: bytes,
    ) -> None:
        self._pck_key = pck_key
        self._attestation_key = attestation_key
        self._seal_secret = seal_secret
        self.platform_certificate = platform_certificate
        self.attestation_key_certificate = attestation_key_certificate

    @classmethod
    def create(
        cls,
        vendor: SimulatedVendor,
        *,
        fmspc: bytes = DEFAULT_FMSPC,
        cpu_svn: bytes = DEFAULT_CPU_SVN,
        pce_svn: int = DEFAULT_PCE_SVN,
        qe_svn: int = DEFAULT_QE_SVN,
        qe_mr_signer: bytes | None = None,
        now: int | None = None,
        valid_for: int = DEFAULT_CERT_VALIDITY_SECONDS,
    ) -> SimulatedPlatform:
        """A new platform whose certificate the simulated ``vendor`` signs.

        Its quoting enclave runs at ``qe_svn`` and is the vendor's own (``qe_mr_signer``
        defaults to ``vendor.qe_mr_signer``; pass another to model a foreign quoting enclave).
        """
        if len(fmspc) != 6 or len(cpu_svn) != 16:
            raise ValueError("fmspc must be 6 bytes and cpu_svn 16 bytes")
        issued = int(time.time()) if now is None else int(now)
        platform_id = secrets.token_bytes(16)
        pck_key = nacl.signing.SigningKey.generate()
        unsigned = PlatformCertificate(
            platform_id, bytes(fmspc), pce_svn, bytes(cpu_svn), bytes(pck_key.verify_key), issued, issued + valid_for
        )
        cert = dataclasses.replace(unsigned, signature=vendor.sign(unsigned.tbs_bytes()))
        qe_signer = vendor.qe_mr_signer if qe_mr_signer is None else bytes(qe_mr_signer)
        return cls._with_attestation_key(pck_key, cert, qe_svn, qe_signer, secrets.token_bytes(32), issued)

    @classmethod
    def _with_attestation_key(
        cls, pck_key: nacl.signing.SigningKey, cert: PlatformCertificate, qe_svn: int, qe_mr_signer: bytes,
        seal_secret: bytes, now: int,
    ) -> SimulatedPlatform:
        if len(qe_mr_signer) != 32:
            raise ValueError("qe_mr_signer must be 32 bytes")
        ak = nacl.signing.SigningKey.generate()
        unsigned = AttestationKeyCertificate(cert.platform_id, qe_svn, bytes(ak.verify_key), now, qe_mr_signer,
                                             QE_ISV_PROD_ID)
        ak_cert = dataclasses.replace(unsigned, signature=pck_key.sign(unsigned.tbs_bytes()).signature)
        return cls(
            pck_key=pck_key,
            platform_certificate=cert,
            attestation_key=ak,
            attestation_key_certificate=ak_cert,
            seal_secret=seal_secret,
        )

    # -- identity -------------------------------------------------------------------------
    @property
    def platform_id(self) -> bytes:
        return self.platform_certificate.platform_id

    @property
    def fmspc(self) -> bytes:
        return self.platform_certificate.fmspc

    @property
    def cpu_svn(self) -> bytes:
        return self.platform_certificate.cpu_svn

    @property
    def pce_svn(self) -> int:
        return self.platform_certificate.pce_svn

    @property
    def qe_svn(self) -> int:
        return self.attestation_key_certificate.qe_svn

    @property
    def attestation_public_key(self) -> bytes:
        return bytes(self._attestation_key.verify_key)

    # -- enclaves -------------------------------------------------------------------------
    def launch(
        self,
        code: Callable[[bytes, Mapping[str, Any]], bytes] | CodeImage,
        *,
        config: Mapping[str, Any] | None = None,
        signer: nacl.signing.SigningKey | None = None,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
    ) -> Enclave:
        """Measure ``code`` with ``config`` and start it as an enclave.

        ``code`` is a module-level function ``fn(data: bytes, config: Mapping) -> bytes`` (the
        enclave runs it from its measured module; see :mod:`tee_sim.measurement`), or a
        :class:`~tee_sim.measurement.CodeImage` (``CodeImage.of_modules``) for an enclave that
        only attests. ``signer`` is the enclave author's Ed25519 key (default: the public
        development key, see :data:`tee_sim.measurement.DEV_SIGNER_MR_SIGNER`).
        """
        from tee_sim.enclave import Enclave

        return Enclave(
            self, code, config=config, signer=signer, isv_prod_id=isv_prod_id, isv_svn=isv_svn, debug=debug
        )

    def _quote(self, body: ReportBody, enclave_public_key: bytes) -> Quote:
        """The quoting enclave: sign a report body with the attestation key."""
        header = QuoteHeader(qe_svn=self.qe_svn, pce_svn=self.pce_svn, platform_id=self.platform_id)
        signature = self._attestation_key.sign(header.to_bytes() + body.to_bytes()).signature
        return Quote(
            header,
            body,
            signature,
            self.attestation_public_key,
            bytes(enclave_public_key),
            self.attestation_key_certificate,
            self.platform_certificate,
        )

    @staticmethod
    def _attributes(debug: bool) -> int:
        return FLAG_INITTED | FLAG_MODE64BIT | (FLAG_DEBUG if debug else 0)

    def _egetkey(self, enclave: Enclave, policy: SealPolicy, isv_svn: int, key_id: bytes) -> bytes:
        """EGETKEY: a sealing key for ``enclave``, refusing an svn above the enclave's own."""
        if isv_svn > enclave.isv_svn:
            raise SealingError(
                f"sealed at isv_svn {isv_svn}, but this enclave runs at isv_svn {enclave.isv_svn}: an "
                "enclave can only derive sealing keys of its own or a lower svn"
            )
        return derive_seal_key(
            self._seal_secret,
            policy=policy,
            mr_enclave=enclave.mr_enclave,
            mr_signer=enclave.mr_signer,
            isv_prod_id=enclave.isv_prod_id,
            isv_svn=isv_svn,
            debug=enclave.debug,
            key_id=key_id,
        )

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        """State for a file (contains the platform's secrets; a simulation only)."""
        return {
            "schema_version": 1,
            "kind": "pol-tee-sim-platform",
            "pck_key": bytes(self._pck_key).hex(),
            "attestation_key": bytes(self._attestation_key).hex(),
            "seal_secret": self._seal_secret.hex(),
            "platform_certificate": self.platform_certificate.to_bytes().hex(),
            "attestation_key_certificate": self.attestation_key_certificate.to_bytes().hex(),
        }

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, object]) -> SimulatedPlatform:
        what = "platform state"
        obj = data if isinstance(data, dict) else strict_json_loads(data, StateError, what)
        if require(obj, "kind", str, StateError, what) != "pol-tee-sim-platform":
            raise StateError(f"{what}: kind is not 'pol-tee-sim-platform'")

        def field_bytes(key: str, length: int | None) -> bytes:
            return from_hex(require(obj, key, str, StateError, what), length, StateError, f"{what} {key}")

        try:
            cert = PlatformCertificate.from_bytes(field_bytes("platform_certificate", None))
            ak_cert = AttestationKeyCertificate.from_bytes(field_bytes("attestation_key_certificate", None))
        except CertificateFormatError as exc:
            raise StateError(f"{what}: {exc}") from None
        return cls(
            pck_key=nacl.signing.SigningKey(field_bytes("pck_key", 32)),
            platform_certificate=cert,
            attestation_key=nacl.signing.SigningKey(field_bytes("attestation_key", 32)),
            attestation_key_certificate=ak_cert,
            seal_secret=field_bytes("seal_secret", 32),
        )


__all__ = ["SimulatedPlatform", "DEFAULT_FMSPC", "DEFAULT_CPU_SVN", "DEFAULT_QE_SVN"]
