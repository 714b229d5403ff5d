"""Final-weights commitments bound to the signed chain: they open to the chain's final weights and
nothing else, do not move to another chain or node, survive a JSON round trip (and refuse a
malformed one), and support a proof of knowledge that reveals nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from certify.commitment import (
    FinalWeightsCommitment,
    binding_of_proof,
    commit_final_weights,
    final_model_tensors,
    prove_knowledge,
    verify_final_weights,
    verify_knowledge,
)
from pol.proof_file import ProofReader
from verifier.untrusted_json import DocumentError
from zk import ProofRejected


@pytest.fixture(scope="module")
def committed(honest_raw_proof):
    with ProofReader(honest_raw_proof) as r:
        binding, weights = binding_of_proof(r), final_model_tensors(r)
        earlier = {k: v for k, v in r.checkpoint_state(r.num_checkpoints - 2).items() if k in weights}
    fwc, blindings = commit_final_weights(weights, binding)
    return binding, weights, earlier, fwc, blindings


def test_the_binding_is_the_signed_chain(committed, honest_raw_proof) -> None:
    binding, weights, *_ = committed
    with ProofReader(honest_raw_proof) as r:
        assert binding.chain_head == r.final["chain_head"] and binding.weights_digest == r.final["final_weights_digest"]
        assert binding.state_digest == r.state_digests[-1] and binding.checkpoint == r.num_checkpoints - 1
    assert set(weights) and all(k.startswith("model/") for k in weights)


def test_the_commitment_opens_to_the_chains_final_weights(committed) -> None:
    binding, weights, _, fwc, _ = committed
    assert verify_final_weights(weights, fwc, binding) == 0


def test_a_commitment_that_does_not_open_to_the_final_weights_is_rejected(committed) -> None:
    binding, weights, earlier, fwc, _ = committed
    with pytest.raises(ProofRejected):
        verify_final_weights(earlier, fwc, binding)        # the chain's previous checkpoint
    nudged = {k: v.copy() for k, v in weights.items()}
    name = sorted(nudged)[0]
    nudged[name].reshape(-1)[0] += 0.01                    # about 41 quantisation steps
    with pytest.raises(ProofRejected):
        verify_final_weights(nudged, fwc, binding)
    other, _ = commit_final_weights(earlier, binding)      # a node committing to other weights
    with pytest.raises(ProofRejected):
        verify_final_weights(weights, other, binding)


def test_a_commitment_does_not_move_to_another_chain_or_node(committed) -> None:
    binding, weights, _, fwc, _ = committed
    for change in ({"chain_head": bytes(32)}, {"node": 1}, {"weights_digest": bytes(32)}, {"checkpoint": 0}):
        other = dataclasses.replace(binding, **change)
        with pytest.raises(ProofRejected, match="another chain"):
            verify_final_weights(weights, fwc, other)
        # relabelled to claim the other binding, the binding proof no longer holds
        with pytest.raises(ProofRejected):
            verify_final_weights(weights, dataclasses.replace(fwc, binding=other), other)


def test_json_round_trip_and_malformed_documents(committed) -> None:
    binding, weights, _, fwc, _ = committed
    again = FinalWeightsCommitment.loads(fwc.dumps())
    assert again == fwc and again.digest() == fwc.digest()
    verify_final_weights(weights, again, binding)
    doc = json.loads(fwc.dumps())
    for path, value in ((("chunks",), []), (("binding", "run_id"), "zz"), (("params", "bits"), "16"),
                        (("binding_proof",), "00"), (("extra",), 1), (("chunks",), ["00" * 47])):
        bad = json.loads(json.dumps(doc))
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(DocumentError):
            FinalWeightsCommitment.loads(json.dumps(bad))


def test_knowledge_of_the_opening_without_revealing_it(committed) -> None:
    binding, weights, earlier, fwc, blindings = committed
    proof = prove_knowledge(fwc, weights, blindings, challenge=b"reader-challenge-1")
    verify_knowledge(fwc, proof, challenge=b"reader-challenge-1")
    with pytest.raises(ProofRejected):
        verify_knowledge(fwc, proof, challenge=b"another challenge")   # not replayable to a new reader
    forged = prove_knowledge(fwc, earlier, blindings, challenge=b"reader-challenge-2")
    with pytest.raises(ProofRejected):
        verify_knowledge(fwc, forged, challenge=b"reader-challenge-2")   # without the committed values
