"""Zero-knowledge commitments to model weights (Pedersen over BLS12-381 G1, sigma protocols).

A trainer commits to its weights without revealing them; whoever holds the weights checks
that the commitment opens to exactly their quantisation; a prover shows it knows the committed
weights without handing them over::

    import numpy as np
    from zk import Committer, Context, commit_weights, prove_opening, verify_opening, verify_weights_binding
    from zk.weights import quantised

    weights = {"model/w": np.random.randn(64, 64).astype(np.float32)}
    ctx = Context(run_id=b"\\x00" * 32, checkpoint=3)      # the proof's plan digest, checkpoint index
    wc, blindings = commit_weights(weights, ctx)           # keep the blindings private
    verify_weights_binding(weights, wc, ctx)               # raises ProofRejected unless bound

    committer = Committer(wc.params)                       # generators cached on disk
    _, values, _ = quantised(weights, wc.params)
    proof = prove_opening(committer, ctx, wc.commitment, values, blindings, challenge=b"verifier nonce")
    verify_opening(committer, ctx, wc.commitment, proof, challenge=b"verifier nonce")  # raises if bad

From the command line: ``pol zk commit``, ``pol zk prove-ownership``, ``pol zk open``,
``pol zk verify`` (see docs/ZK.md for what each proof does and does not prove). The backend is
py-arkworks-bls12381 when installed, else the pure-Python py-ecc reference; force one with
``POL_ZK_BACKEND=pyecc|arkworks``. Both write identical bytes. Not audited; not constant-time.
"""

from zk.backend import Backend, available_backends, get_backend
from zk.errors import (
    BackendUnavailableError,
    PointDecodeError,
    ProofRejected,
    ZkError,
    ZkFormatError,
)
from zk.generators import DEFAULT_DST, GeneratorSet
from zk.pedersen import Committer, Params, VectorCommitment
from zk.quantize import Layout, Quantizer
from zk.policy import ZkPolicy
from zk.sigma import (
    BindingProof,
    ChunkOpening,
    Context,
    OpeningProof,
    open_chunk,
    prove_binding,
    prove_opening,
    verify_binding,
    verify_chunk_opening,
    verify_opening,
)
from zk.weights import WeightsCommitment, commit_weights, verify_weights_binding

__all__ = [
    "Backend",
    "available_backends",
    "get_backend",
    "ZkError",
    "ZkFormatError",
    "PointDecodeError",
    "ProofRejected",
    "BackendUnavailableError",
    "DEFAULT_DST",
    "GeneratorSet",
    "Committer",
    "Params",
    "VectorCommitment",
    "Layout",
    "Quantizer",
    "ZkPolicy",
    "Context",
    "OpeningProof",
    "BindingProof",
    "ChunkOpening",
    "prove_opening",
    "verify_opening",
    "prove_binding",
    "verify_binding",
    "WeightsCommitment",
    "commit_weights",
    "verify_weights_binding",
    "open_chunk",
    "verify_chunk_opening",
]
