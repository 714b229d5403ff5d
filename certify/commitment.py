"""A commitment to a run's (or a node's) final weights, bound to its signed chain (``zk``).

A node commits to its stage's final weights with the project's Pedersen vector commitments
(:func:`zk.commit_weights`) under a context that names *where those weights sit in its signed
chain*::

    ChainBinding(run_id = plan digest (or pipeline id), node = rank or None, checkpoint = index of
                 the final checkpoint, chain_head, state_digest = that checkpoint's committed
                 digest, weights_digest = the signed final-weights digest)
    zk context = Context(run_id, checkpoint,
                         tagged_hash("pol-certify-final-weights-v1", chain_head, state_digest,
                                     weights_digest, u64 node + 1 (0 for none)))

so its binding proof holds only for this run, this node, this chain head and these weights: a
commitment moved to another chain or node fails. What a **reader of the certificate** learns:
the commitment (hiding: chunk commitments with fresh secret blindings), the binding values above
(already public in the node's signed proof header) and the quantisation parameters; nothing
about the weights. What it does **not** learn, or get: that the commitment opens to the chain's
weights — only a party holding those weights (the node's verifier, who has the node's proof and
its checkpoints; an auditor the node opens it to) checks that, with
:func:`verify_final_weights`. A node can also prove it *knows* the opening, now, without
revealing it (:func:`prove_knowledge` / :func:`verify_knowledge`, bound to the reader's
challenge). The commitment binds the **quantised** weights (zk defaults: 2^-12 resolution,
16-bit; docs/ZK.md), not the floats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.hashing import canonical_json, tagged_hash
from pol.proof_file import ProofReader
from verifier import untrusted_json as uj
from zk import (
    Committer,
    Context,
    OpeningProof,
    Params,
    ProofRejected,
    VectorCommitment,
    WeightsCommitment,
    ZkPolicy,
    commit_weights,
    prove_opening,
    verify_opening,
    verify_weights_binding,
)
from zk.quantize import Layout
from zk.sigma import BindingProof
from zk.weights import quantised

_BINDING_TAG = b"pol-certify-final-weights-v1"
MAX_CHUNKS = 1 << 20


@dataclass(frozen=True)
class ChainBinding:
    run_id: bytes
    node: int | None
    checkpoint: int
    chain_head: bytes
    state_digest: bytes
    weights_digest: bytes

    def context(self) -> Context:
        node = 0 if self.node is None else self.node + 1
        bound = tagged_hash(_BINDING_TAG, self.chain_head, self.state_digest, self.weights_digest,
                            node.to_bytes(8, "little"))
        return Context(self.run_id, self.checkpoint, bound)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id.hex(), "node": self.node, "checkpoint": self.checkpoint,
                "chain_head": self.chain_head.hex(), "state_digest": self.state_digest.hex(),
                "weights_digest": self.weights_digest.hex()}

    @classmethod
    def from_json(cls, obj: Any, what: str) -> "ChainBinding":
        if not isinstance(obj, dict):
            raise uj.DocumentError(f"{what} must be an object")
        uj.no_other_fields(obj, {"run_id", "node", "checkpoint", "chain_head", "state_digest", "weights_digest"}, what)
        checkpoint = uj.field(obj, "checkpoint", int, what)
        node = uj.field(obj, "node", int, what, optional=True)
        if checkpoint < 0 or (node is not None and node < 0):
            raise uj.DocumentError(f"{what}: negative index")
        digests = [uj.hex_field(obj, k, 32, what) or b"" for k in ("run_id", "chain_head", "state_digest",
                                                                  "weights_digest")]
        return cls(digests[0], node, checkpoint, digests[1], digests[2], digests[3])


def binding_of_proof(reader: ProofReader) -> ChainBinding:
    """The binding of a finished single-process proof's final weights (its last checkpoint)."""
    if reader.final is None:
        raise ValueError(f"{reader.path} is unfinished: no signed final weights to bind to")
    last = reader.num_checkpoints - 1
    return ChainBinding(reader.plan_digest, None, last, reader.final["chain_head"], reader.state_digests[last],
                        reader.final["final_weights_digest"])


def final_model_tensors(reader: ProofReader) -> dict[str, np.ndarray]:
    """The ``model/`` float tensors of a proof's last checkpoint: what gets committed."""
    from zk.link import model_tensors

    return model_tensors(reader.checkpoint_state(reader.num_checkpoints - 1))


@dataclass(frozen=True)
class FinalWeightsCommitment:
    binding: ChainBinding
    weights: WeightsCommitment

    def to_json(self) -> dict[str, Any]:
        w = self.weights
        return {"schema": "pol-final-weights-commitment-v1", "binding": self.binding.to_json(),
                "params": {"chunk_size": w.params.chunk_size, "scale_bits": w.params.scale_bits,
                           "bits": w.params.bits, "dst": w.params.dst.decode("ascii")},
                "layout": {"names": list(w.layout.names), "shapes": [list(s) for s in w.layout.shapes]},
                "length": w.commitment.length, "genset_id": w.commitment.genset_id.hex(),
                "chunks": [c.hex() for c in w.commitment.chunks], "binding_proof": w.binding.to_bytes().hex(),
                "clipped": w.clipped}

    def digest(self) -> bytes:
        return tagged_hash(b"pol-final-weights-commitment-v1", canonical_json(self.to_json()))

    @classmethod
    def from_json(cls, obj: Any, what: str = "weights commitment") -> "FinalWeightsCommitment":
        if not isinstance(obj, dict):
            raise uj.DocumentError(f"{what} must be an object")
        uj.no_other_fields(obj, {"schema", "binding", "params", "layout", "length", "genset_id", "chunks",
                                 "binding_proof", "clipped"}, what)
        if uj.field(obj, "schema", str, what) != "pol-final-weights-commitment-v1":
            raise uj.DocumentError(f"{what}: unknown schema")
        binding = ChainBinding.from_json(uj.field(obj, "binding", dict, what), f"{what} binding")
        p = uj.field(obj, "params", dict, what)
        uj.no_other_fields(p, {"chunk_size", "scale_bits", "bits", "dst"}, what)
        lay = uj.field(obj, "layout", dict, what)
        uj.no_other_fields(lay, {"names", "shapes"}, what)
        chunks = uj.field(obj, "chunks", list, what)
        if not 0 < len(chunks) <= MAX_CHUNKS or not all(isinstance(c, str) for c in chunks):
            raise uj.DocumentError(f"{what}: chunks must be 1..{MAX_CHUNKS} hex strings")
        try:
            params = Params(uj.field(p, "chunk_size", int, what), uj.field(p, "scale_bits", int, what),
                            uj.field(p, "bits", int, what), uj.field(p, "dst", str, what).encode("ascii"))
            names = [str(n) for n in uj.field(lay, "names", list, what)]
            shapes = [tuple(int(d) for d in s) for s in uj.field(lay, "shapes", list, what)]
            if len(names) != len(shapes):
                raise ValueError("names and shapes differ in length")
            layout = Layout(tuple(names), tuple(shapes))
            com = VectorCommitment(tuple(bytes.fromhex(c) for c in chunks), uj.field(obj, "length", int, what),
                                   uj.hex_field(obj, "genset_id", 32, what) or b"")
            proof = BindingProof.from_bytes(bytes.fromhex(uj.field(obj, "binding_proof", str, what)))
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise uj.DocumentError(f"{what}: {str(exc)[:160]}") from None
        except Exception as exc:  # zk's own format errors
            raise uj.DocumentError(f"{what}: {str(exc)[:160]}") from None
        return cls(binding, WeightsCommitment(params, layout, com, proof, uj.field(obj, "clipped", int, what)))

    @classmethod
    def loads(cls, text: str | bytes) -> "FinalWeightsCommitment":
        return cls.from_json(uj.loads(text, "weights commitment"))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def commit_final_weights(weights: Mapping[str, np.ndarray], binding: ChainBinding, *,
                         params: Params | None = None) -> tuple[FinalWeightsCommitment, list[int]]:
    """The node's side: commit its final weights; keep the returned blindings secret."""
    wc, blindings = commit_weights(weights, binding.context(), params=params)
    return FinalWeightsCommitment(binding, wc), blindings


def verify_final_weights(weights: Mapping[str, np.ndarray], fwc: FinalWeightsCommitment, expected: ChainBinding, *,
                         policy: ZkPolicy | None = None) -> int:
    """Whoever holds the chain's final weights: raise :class:`zk.ProofRejected` unless ``fwc`` is
    bound to ``expected`` (this run, node, chain head, checkpoint and weights digest) and opens to
    exactly these weights, quantised. Returns the clipped count (recounted here)."""
    if fwc.binding != expected:
        raise ProofRejected("the commitment is bound to another chain, node, checkpoint or weights digest")
    clipped = verify_weights_binding(weights, fwc.weights, expected.context(), policy=policy)
    if clipped > (policy or ZkPolicy()).max_clipped:
        raise ProofRejected(f"{clipped} weight(s) fall outside the committed range (at most "
                            f"{(policy or ZkPolicy()).max_clipped} allowed)")
    return clipped


def prove_knowledge(fwc: FinalWeightsCommitment, weights: Mapping[str, np.ndarray], blindings: list[int],
                    challenge: bytes) -> OpeningProof:
    """The node proves it knows the committed weights, bound to the reader's fresh ``challenge``."""
    committer = Committer(fwc.weights.params)
    _, values, _ = quantised(weights, fwc.weights.params)
    return prove_opening(committer, fwc.binding.context(), fwc.weights.commitment, values, blindings,
                         challenge=challenge)


def verify_knowledge(fwc: FinalWeightsCommitment, proof: OpeningProof, challenge: bytes,
                     policy: ZkPolicy | None = None) -> None:
    """A reader without the weights: raise :class:`zk.ProofRejected` unless the prover knows an
    opening of this commitment (it learns nothing about the weights)."""
    problems = (policy or ZkPolicy()).problems(fwc.weights.params)
    if problems:
        raise ProofRejected("parameters not accepted: " + "; ".join(problems))
    verify_opening(Committer(fwc.weights.params), fwc.binding.context(), fwc.weights.commitment, proof,
                   challenge=challenge)
