"""Certifying split-learning nodes: attested enclaves (SIMULATED) and committed final weights.

The pieces of a pipeline certificate that need only ``tee_sim`` and ``zk`` (docs/CERTIFY.md)::

    from certify.attestation import (NodeAttestationVerifier, NodeClaims, NodePolicy, attest_node,
                                     expected_measurement, launch_node_enclave)
    from certify.commitment import binding_of_proof, commit_final_weights, verify_final_weights

    # the checking party: one expected measurement per node, from its own checkout and the plan
    policy = NodePolicy(expected={0: expected_measurement([stage0_spec])})
    checker = NodeAttestationVerifier(root_public_key=vendor.public_key, collateral=store,
                                      nonces=NonceRegistry(), policy=policy)
    nonce = checker.issue_nonce()
    # the node: an attest-only enclave binding its key, the plan digest and its stages to the nonce
    node = launch_node_enclave(platform, [stage0_spec])
    claims = NodeClaims(rank=0, stages=(0,), node_public_key=node_key, plan_digest=plan_digest)
    quote = attest_node(node, claims, nonce)
    records = checker.admit({0: (quote, claims, nonce)})     # raises NodeNotAttested naming failures

    # final weights, committed and bound to the signed chain (hiding; checked by whoever holds them)
    fwc, blindings = commit_final_weights(weights, binding)
    verify_final_weights(weights, fwc, binding)              # raises zk.ProofRejected

Votes, the quorum and disputes live in ``verifier`` (``verifier.vote``, ``verifier.quorum``,
``verifier.dispute``, ``verifier.fraud_proof``).
"""
