"""Attested nodes (simulated TEE): an honest node is admitted; a debug enclave, a wrong measurement,
a replayed quote, a quote binding another key (or another plan, or other stages) are refused with
the right reason, and the error names the node."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from nacl.signing import SigningKey

from certify.attestation import (
    NodeAttestationVerifier,
    NodeClaims,
    NodeNotAttested,
    NodePolicy,
    attest_node,
    expected_measurement,
    launch_node_enclave,
    node_image,
)
from tee_sim import CollateralStore, NonceRegistry, SimulatedPlatform, SimulatedVendor, TcbStatus, issue_collateral

STAGES = [{"index": 0, "module": {"spec": "digits-mlp", "kwargs": {"cut": 0}}},
          {"index": 1, "module": {"spec": "digits-mlp", "kwargs": {"cut": 1}}},
          {"index": 2, "module": {"spec": "digits-mlp", "kwargs": {"cut": 2}}}]
PLAN = hashlib.sha256(b"a pipeline plan").digest()


@pytest.fixture(scope="module")
def image():
    return node_image()


@pytest.fixture()
def world(image):
    vendor = SimulatedVendor.generate()
    platform = SimulatedPlatform.create(vendor)
    store = CollateralStore(None, root_public_key=vendor.public_key)
    store.offer(issue_collateral(vendor, platforms=[platform]))
    keys = [SigningKey.generate() for _ in STAGES]
    policy = NodePolicy(expected={r: expected_measurement([s], image=image) for r, s in enumerate(STAGES)})
    checker = NodeAttestationVerifier(root_public_key=vendor.public_key, collateral=store, nonces=NonceRegistry(),
                                      policy=policy)
    enclaves = [launch_node_enclave(platform, [s], image=image) for s in STAGES]
    claims = [NodeClaims(r, (r,), bytes(k.verify_key), PLAN) for r, k in enumerate(keys)]
    return dict(vendor=vendor, platform=platform, store=store, keys=keys, checker=checker, enclaves=enclaves,
                claims=claims)


def answers(w):
    """Every node attests honestly on a fresh nonce: ``{rank: (quote, expected claims, nonce)}``."""
    out = {}
    for r, claims in enumerate(w["claims"]):
        nonce = w["checker"].issue_nonce()
        out[r] = (attest_node(w["enclaves"][r], claims, nonce), claims, nonce)
    return out


def replaced(w, rank, enclave, quoted, nonce=None):
    """Every node answers honestly except ``rank``: ``enclave`` quotes ``quoted`` claims on ``nonce``
    (default: a fresh one), while the checker expects the plan's claims for that node."""
    out = answers(w)
    nonce = w["checker"].issue_nonce() if nonce is None else nonce
    out[rank] = (attest_node(enclave, quoted, nonce), w["claims"][rank], nonce)
    return out


def refused(w, answers_) -> dict[int, tuple[str, ...]]:
    with pytest.raises(NodeNotAttested) as exc:
        w["checker"].admit(answers_)
    return exc.value.failures


def test_honest_nodes_are_admitted_as_simulated(world, image) -> None:
    records = world["checker"].admit(answers(world))
    assert [r.claims.rank for r in records] == [0, 1, 2]
    assert all(r.verdict == "accepted (simulated)" and r.accepted and not r.reasons for r in records)
    doc = records[1].to_json()
    assert doc["simulated"] is True and doc["stages"] == [1] and doc["plan_digest"] == PLAN.hex()
    assert doc["expected_mr_enclave"] == expected_measurement([STAGES[1]], image=image).hex()


def test_the_measurement_covers_the_stage_spec_and_the_code(image) -> None:
    base = expected_measurement([STAGES[0]], image=image)
    assert expected_measurement([STAGES[1]], image=image) != base
    assert expected_measurement([STAGES[0]], modules=("pol.hashing",)) != base   # other code, same stage
    assert {m.name for m in image.modules} >= {"pol.recorder", "pol.replay", "pol.hashing"}


def test_a_debug_enclave_is_refused(world) -> None:
    debug = launch_node_enclave(world["platform"], [STAGES[1]], debug=True)
    failures = refused(world, replaced(world, 1, debug, world["claims"][1]))
    assert failures == {1: ("debug_enclave",)}
    assert "node 1 failed attestation (simulated TEE): debug_enclave" in str(NodeNotAttested(failures))


def test_a_node_running_another_stage_has_the_wrong_measurement(world) -> None:
    wrong = launch_node_enclave(world["platform"], [STAGES[0]])   # node 2 measures stage 0's spec
    failures = refused(world, replaced(world, 2, wrong, world["claims"][2]))
    assert failures == {2: ("mr_enclave_not_allowed",)}


def test_a_replayed_quote_is_refused(world) -> None:
    first = answers(world)
    world["checker"].admit(first)
    failures = refused(world, {**answers(world), 0: first[0]})   # node 0 sends its old quote and nonce again
    assert failures == {0: ("nonce_replayed",)}


def test_a_quote_from_another_pipeline_or_for_a_nonce_not_issued_is_refused(world) -> None:
    other_plan = dataclasses.replace(world["claims"][0], plan_digest=hashlib.sha256(b"another plan").digest())
    failures = refused(world, replaced(world, 0, world["enclaves"][0], other_plan))
    assert failures == {0: ("report_data_mismatch",)}
    stray = NonceRegistry().issue()   # a nonce this checker never issued
    failures = refused(world, replaced(world, 1, world["enclaves"][1], world["claims"][1], stray))
    assert failures == {1: ("nonce_unknown",)}


def test_a_quote_binding_another_key_than_the_proofs_signer_is_refused(world) -> None:
    impostor = dataclasses.replace(world["claims"][1], node_public_key=bytes(SigningKey.generate().verify_key))
    failures = refused(world, replaced(world, 1, world["enclaves"][1], impostor))
    assert failures == {1: ("report_data_mismatch",)}


def test_a_quote_claiming_other_stages_is_refused(world) -> None:
    greedy = dataclasses.replace(world["claims"][1], stages=(1, 2))
    failures = refused(world, replaced(world, 1, world["enclaves"][1], greedy))
    assert failures == {1: ("report_data_mismatch",)}


def test_every_failing_node_is_named_and_a_missing_one_too(world) -> None:
    debug = launch_node_enclave(world["platform"], [STAGES[0]], debug=True)
    a = replaced(world, 0, debug, world["claims"][0])
    del a[2]
    failures = refused(world, a)
    assert failures == {0: ("debug_enclave",), 2: ("no_quote",)}


def test_out_of_date_tcb_and_required_hardware_are_refused(world) -> None:
    world["store"].offer(issue_collateral(world["vendor"], platforms=[world["platform"]], status=TcbStatus.OUT_OF_DATE,
                                          tcb_evaluation_data_number=2))
    assert refused(world, answers(world)) == {r: ("tcb_status_not_allowed",) for r in range(3)}
    world["store"].offer(issue_collateral(world["vendor"], platforms=[world["platform"]], tcb_evaluation_data_number=3))
    world["checker"].policy.require_hardware = True
    assert refused(world, answers(world)) == {r: ("simulated_evidence",) for r in range(3)}
