"""A simulated TEE whose attestation flow matches real hardware's (SGX DCAP-shaped).

THIS IS A SIMULATION: it proves nothing about real hardware. It lets code that verifies
attestation be written and tested now, and carried over to Intel DCAP / AWS Nitro / NVIDIA CC
verifiers later (see docs/TEE.md).

Tutorial::

    from tee_sim import (AttestationPolicy, AttestationVerifier, CollateralStore, NonceRegistry,
                         SimulatedPlatform, SimulatedVendor, issue_collateral)
    from myproject.jobs import train_segment   # fn(data: bytes, config) -> bytes, at module level

    vendor = SimulatedVendor.generate()                  # the simulated Intel/AWS/NVIDIA
    platform = SimulatedPlatform.create(vendor)          # one machine, certified by the vendor
    enclave = platform.launch(train_segment, config={"lr": 0.1}, isv_svn=2)
    # The enclave measures train_segment's module file and the project modules it imports, and
    # runs it from those measured bytes (closures, lambdas and __main__ are refused).

    # Verifier side: pin the root, keep its own collateral, state the policy, issue a nonce.
    store = CollateralStore(None, root_public_key=vendor.public_key)   # a file path to persist
    store.offer(issue_collateral(vendor, platforms=[platform]))        # refreshed from the vendor
    nonces = NonceRegistry(ttl_seconds=300)
    policy = AttestationPolicy(allowed_mr_enclave={enclave.mr_enclave}, min_isv_svn=2)
    verifier = AttestationVerifier(root_public_key=vendor.public_key, collateral=store,
                                   policy=policy, nonces=nonces)
    nonce = nonces.issue()

    output, quote = enclave.run(b"input bytes", nonce=nonce)   # in the enclave
    result = verifier.verify(quote.to_bytes(), nonce=nonce, input=b"input bytes", output=output)
    assert result.accepted_simulated, result.reasons           # never a bare bool, never plain "accepted"

Attesting claims instead of a run (e.g. a split-learning node's key and stage)::

    image = CodeImage.of_modules(["pol.recorder"])             # the project code the node runs
    node = platform.launch(image, config={"stage": 2})
    quote = node.attest({"node_public_key": pk.hex(), "plan_digest": d.hex(), "stage": 2}, nonce=nonce)
    verifier.verify(quote, nonce=nonce, report_fields={...the same claims...})

Sealing: ``blob = enclave.seal(data)`` / ``enclave.unseal(blob)``, with
``policy=SealPolicy.MRSIGNER`` to let later versions by the same signer read it.
"""

from __future__ import annotations

from tee_sim.collateral import Collateral, QeIdentity, QeTcbLevel, TcbLevel, TcbStatus, issue_collateral
from tee_sim.collateral_store import CollateralStore, StoreUpdate
from tee_sim.enclave import Enclave, EnclaveRun
from tee_sim.errors import QuoteFormatError, SealingError, TeeError, TeeInputError
from tee_sim.keys import SimulatedVendor
from tee_sim.measurement import DEV_SIGNER_MR_SIGNER, CodeImage, measure, mr_signer_of
from tee_sim.nonces import NonceRegistry, NonceStatus
from tee_sim.platform import SimulatedPlatform
from tee_sim.policy import AttestationPolicy, read_policy_file, write_policy_file
from tee_sim.quote import Quote
from tee_sim.sealing import SealPolicy
from tee_sim.verify import (
    ACCEPTED_SIMULATED,
    AttestationResult,
    AttestationVerifier,
    Check,
    QuoteClaims,
    Reason,
)

__all__ = [
    "ACCEPTED_SIMULATED",
    "AttestationPolicy",
    "AttestationResult",
    "AttestationVerifier",
    "Check",
    "CodeImage",
    "Collateral",
    "CollateralStore",
    "DEV_SIGNER_MR_SIGNER",
    "Enclave",
    "EnclaveRun",
    "NonceRegistry",
    "NonceStatus",
    "QeIdentity",
    "QeTcbLevel",
    "Quote",
    "QuoteClaims",
    "QuoteFormatError",
    "Reason",
    "SealPolicy",
    "SealingError",
    "SimulatedPlatform",
    "SimulatedVendor",
    "StoreUpdate",
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
