"""An enclave: measured code running on a simulated platform, producing quoted outputs.

``run(data, nonce=...)`` executes the measured entry function (from its measured bytes, see
:mod:`tee_sim._loader`) and returns the output with a quote whose report data binds the
SHA-256 of the input *and* of the output to the verifier's nonce. ``attest(fields, nonce=...)``
quotes caller-chosen claims (e.g. a node's signing key, a plan digest, a stage index); the two
kinds are hashed apart, so a claims quote never passes for a run. In this simulation whoever
holds an :class:`Enclave` object plays the code inside it: a real enclave's report data is
chosen by its own code, which the host cannot drive (docs/TEE.md, trust boundary).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import nacl.exceptions
import nacl.public
import nacl.signing

from tee_sim._loader import EnclaveLoader
from tee_sim.errors import EnclaveError
from tee_sim.measurement import CodeImage, config_bytes, dev_signer, mr_signer_of
from tee_sim.nonces import MIN_NONCE_BYTES
from tee_sim.quote import KIND_CLAIMS, KIND_RUN, Quote, ReportBody, expected_report_data, run_fields, sha256
from tee_sim.sealing import SealPolicy, seal, unseal

if TYPE_CHECKING:
    from tee_sim.platform import SimulatedPlatform


def _check_nonce(nonce: object) -> None:
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) < MIN_NONCE_BYTES:
        raise EnclaveError(f"nonce must be at least {MIN_NONCE_BYTES} bytes (128 bits)")


class EnclaveRun(NamedTuple):
    """What :meth:`Enclave.run` returns: the output bytes and the quote that binds them."""

    output: bytes
    quote: Quote


class Enclave:
    """Measured code on a :class:`~tee_sim.SimulatedPlatform`. Create with ``platform.launch``.

    Each enclave holds an ephemeral X25519 key pair; :attr:`public_key` goes into every quote
    (bound by report_data) so a verifier can open a channel to *this* enclave instance
    (``nacl.public.SealedBox(PublicKey(quote.enclave_public_key)).encrypt(secret)``, read
    inside with :meth:`decrypt`).
    """

    def __init__(
        self,
        platform: SimulatedPlatform,
        code: Callable[[bytes, Mapping[str, Any]], bytes] | CodeImage,
        *,
        config: Mapping[str, Any] | None,
        signer: nacl.signing.SigningKey | None,
        isv_prod_id: int,
        isv_svn: int,
        debug: bool,
    ) -> None:
        if not isinstance(code, CodeImage) and not callable(code):
            raise EnclaveError(f"enclave code must be a function or a CodeImage, found {type(code).__name__}")
        for name, value in (("isv_prod_id", isv_prod_id), ("isv_svn", isv_svn)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise EnclaveError(f"{name} must be an integer in 0..65535, found {value!r}")
        self._platform = platform
        self.image = code if isinstance(code, CodeImage) else CodeImage.of_function(code)
        self._config_json = config_bytes(config)
        self.name = self.image.entry or ", ".join(m.name for m in self.image.modules[:3])
        self.mr_enclave: bytes = self.image.measurement(config)
        # The function that runs comes from the measured bytes, not from the host's module.
        self._fn = EnclaveLoader(self.image).entry() if self.image.entry else None
        signer = signer if signer is not None else dev_signer()
        self.mr_signer: bytes = mr_signer_of(bytes(signer.verify_key))
        self.isv_prod_id = isv_prod_id
        self.isv_svn = isv_svn
        self.debug = bool(debug)
        self._channel_key = nacl.public.PrivateKey.generate()

    @property
    def public_key(self) -> bytes:
        """This enclave instance's ephemeral X25519 public key (32 bytes)."""
        return bytes(self._channel_key.public_key)

    @property
    def config(self) -> Mapping[str, Any]:
        """A read-only copy of the measured configuration."""
        return types.MappingProxyType(json.loads(self._config_json))

    @property
    def platform(self) -> SimulatedPlatform:
        return self._platform

    def __repr__(self) -> str:
        return (
            f"Enclave({self.name}, mr_enclave={self.mr_enclave.hex()[:16]}..., isv_svn={self.isv_svn}"
            f"{', DEBUG' if self.debug else ''})"
        )

    # -- attestation ----------------------------------------------------------------------
    def report(self, report_data: bytes) -> ReportBody:
        """EREPORT: this enclave's report body carrying ``report_data`` (64 bytes)."""
        if len(report_data) != 64:
            raise EnclaveError(f"report_data must be 64 bytes, found {len(report_data)}")
        return ReportBody(
            cpu_svn=self._platform.cpu_svn,
            attributes=self._platform._attributes(self.debug),
            mr_enclave=self.mr_enclave,
            mr_signer=self.mr_signer,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            report_data=bytes(report_data),
        )

    def attest(self, report_fields: Mapping[str, str | int], *, nonce: bytes) -> Quote:
        """A quote binding these claims (str -> str or int) to the verifier's ``nonce`` and this enclave's key.

        For enclaves that vouch for values rather than compute an output: e.g. a split-learning
        node's ``{"node_public_key": ..., "plan_digest": ..., "stage": 2}``. The verifier checks
        them with ``verify(quote, nonce=..., report_fields=...)``.
        """
        return self._quote(KIND_CLAIMS, report_fields, nonce)

    def run(self, data: bytes, *, nonce: bytes) -> EnclaveRun:
        """Run the measured entry function on ``data``; the quote binds input and output digests."""
        _check_nonce(nonce)  # before running the function
        if self._fn is None:
            raise EnclaveError("this enclave's image has no entry function (it can attest, not run)")
        output = self._fn(bytes(data), self.config)
        if isinstance(output, (bytearray, memoryview)):
            output = bytes(output)
        if not isinstance(output, bytes):
            raise EnclaveError(f"{self.name} returned {type(output).__name__}; enclave functions must return bytes")
        return EnclaveRun(output, self._quote(KIND_RUN, run_fields(sha256(data), sha256(output)), nonce))

    def _quote(self, kind: str, fields: Mapping[str, str | int], nonce: bytes) -> Quote:
        _check_nonce(nonce)
        report_data = expected_report_data(self.public_key, bytes(nonce), kind, fields)
        return self._platform._quote(self.report(report_data), self.public_key)

    # -- channel ----------------------------------------------------------------------------
    def decrypt(self, ciphertext: bytes) -> bytes:
        """Open a ``SealedBox`` addressed to :attr:`public_key` (a secret sent by a verifier)."""
        try:
            return nacl.public.SealedBox(self._channel_key).decrypt(bytes(ciphertext))
        except nacl.exceptions.CryptoError:
            raise EnclaveError("ciphertext was not addressed to this enclave instance, or was altered") from None

    # -- sealing ----------------------------------------------------------------------------
    def _get_key(self, policy: SealPolicy, isv_svn: int, key_id: bytes) -> bytes:
        return self._platform._egetkey(self, policy, isv_svn, key_id)

    def seal(self, data: bytes, *, policy: SealPolicy = SealPolicy.MRENCLAVE) -> bytes:
        """Seal ``data`` to this enclave (MRENCLAVE) or to its signer's product line (MRSIGNER)."""
        return seal(data, policy=policy, isv_svn=self.isv_svn, get_key=self._get_key)

    def unseal(self, blob: bytes) -> bytes:
        """Unseal data; raise :class:`~tee_sim.errors.SealingError` if this enclave may not."""
        return unseal(blob, get_key=self._get_key)


__all__ = ["Enclave", "EnclaveRun"]
