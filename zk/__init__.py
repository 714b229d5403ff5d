"""Zero-knowledge commitments to model weights (Pedersen over BLS12-381 G1, sigma protocols).

A trainer binds itself to its checkpoints without revealing them, opens only the chunks a
verifier samples, and proves it holds the committed weights without handing them over::

    import numpy as np
    from zk import Committer, Params, Context, prove_opening, verify_opening

    committer = Committer(Params(chunk_size=4096))        # generators cached on disk
    weights = {"model/w": np.random.randn(64, 64).astype(np.float32)}
    layout, com, blindings, values, clipped = committer.commit_tensors(weights)
    ctx = Context(run_id=b"\\x00" * 32, checkpoint=3)      # the proof's plan digest
    proof = prove_opening(committer, ctx, com, values, blindings, challenge=b"verifier nonce")
    verify_opening(committer, ctx, com, proof, challenge=b"verifier nonce")  # raises if bad

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
from zk.sigma import (
    ChunkOpening,
    Context,
    LinearProof,
    OpeningProof,
    open_chunk,
    prove_linear,
    prove_opening,
    verify_chunk_opening,
    verify_linear,
    verify_opening,
)

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
    "Context",
    "OpeningProof",
    "LinearProof",
    "ChunkOpening",
    "prove_opening",
    "verify_opening",
    "prove_linear",
    "verify_linear",
    "open_chunk",
    "verify_chunk_opening",
]
