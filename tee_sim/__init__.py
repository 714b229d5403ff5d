"""A simulated TEE whose attestation flow matches real hardware's (SGX DCAP-shaped).

THIS IS A SIMULATION: it proves nothing about real hardware. It lets code that verifies
attestation be written and tested now, and carried over to Intel DCAP / AWS Nitro / NVIDIA CC
verifiers later (see docs/TEE.md).

Tutorial::

    from tee_sim import (AttestationPolicy, AttestationVerifier, NonceRegistry,
                         SimulatedPlatform, SimulatedVendor, issue_collateral)

    def train_segment(data: bytes, config) -> bytes:     # the code the enclave runs
        return data[::-1]

    vendor = SimulatedVendor.generate()                  # the simulated Intel/AWS/NVIDIA
    platform = SimulatedPlatform.create(vendor)          # one machine, certified by the vendor
    enclave = platform.launch(train_segment, config={"lr": 0.1}, isv_svn=2)

    # Verifier side: pin the root, get collateral, state the policy, issue a nonce.
    collateral = issue_collateral(vendor, platforms=[platform])
    nonces = NonceRegistry(ttl_seconds=300)
    policy = AttestationPolicy(allowed_mr_enclave={enclave.mr_enclave}, min_isv_svn=2)
    verifier = AttestationVerifier(root_public_key=vendor.public_key, collateral=collateral,
                                   policy=policy, nonces=nonces)
    nonce = nonces.issue()

    output, quote = enclave.run(b"input bytes", nonce=nonce)   # in the enclave
    result = verifier.verify(quote.to_bytes(), nonce=nonce, output=output)
    assert result.accepted, result.reasons                      # never a bare bool

Sealing: ``blob = enclave.seal(data)`` / ``enclave.unseal(blob)``, with
``policy=SealPolicy.MRSIGNER`` to let later versions by the same signer read it.
"""

from __future__ import annotations

from tee_sim.collateral import Collateral, TcbLevel, TcbStatus, issue_collateral
from tee_sim.enclave import Enclave, EnclaveRun
from tee_sim.errors import QuoteFormatError, SealingError, TeeError, TeeInputError
from tee_sim.keys import SimulatedVendor
from tee_sim.measurement import DEV_SIGNER_MR_SIGNER, measure, mr_signer_of
from tee_sim.nonces import NonceRegistry, NonceStatus
from tee_sim.platform import SimulatedPlatform
from tee_sim.policy import AttestationPolicy, read_policy_file, write_policy_file
from tee_sim.quote import Quote
from tee_sim.sealing import SealPolicy
from tee_sim.verify import (
    AttestationResult,
    AttestationVerifier,
    Check,
    QuoteClaims,
    Reason,
)

__all__ = [
    "AttestationPolicy",
    "AttestationResult",
    "AttestationVerifier",
    "Check",
    "Collateral",
    "DEV_SIGNER_MR_SIGNER",
    "Enclave",
    "EnclaveRun",
    "NonceRegistry",
    "NonceStatus",
    "Quote",
    "QuoteClaims",
    "QuoteFormatError",
    "Reason",
    "SealPolicy",
    "SealingError",
    "SimulatedPlatform",
    "SimulatedVendor",
    "TcbLevel",
    "TcbStatus",
    "TeeError",
    "TeeInputError",
    "issue_collateral",
    "measure",
    "mr_signer_of",
    "read_policy_file",
    "write_policy_file",
]
