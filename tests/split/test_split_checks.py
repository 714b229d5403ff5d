"""Every per-node and pipeline check, seen failing when its claim is false, blaming the right node.

Each forgery is written by the lying node itself (re-chained and re-signed with its own key,
:func:`scripts.attacks_split.forgery.rewrite_node`), so what fails is the check under test, not a
broken signature.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from pol.keys import load_signing_key
from pol.split.messages import Header, tensor_digest
from pol.split.proof import node_proof_path
from scripts.attacks_split.forgery import rewrite_node
from verifier.split import SplitVerifyOptions, verify_pipeline


def judge(run: Path, keys: Path | None) -> tuple[str, list[int], dict[int, set[str]]]:
    report = verify_pipeline(run, keys=keys, options=SplitVerifyOptions(seed=0))
    failed = {int(r.info["rank"]): {c.name for c in r.failed} for r in report.nodes}
    return report.verdict, report.blamed, failed


def key(keys: Path, rank: int):  # type: ignore[no-untyped-def]
    return load_signing_key(keys / f"node{rank}.key")


def test_honest_run_verifies_and_every_check_ran(mlp_run: Path, node_keys: Path) -> None:
    report = verify_pipeline(mlp_run, keys=node_keys, options=SplitVerifyOptions(seed=0))
    assert report.verdict == "verified" and report.exit_code == 0 and report.blamed == []
    names = {c.name for c in report.all_checks()}
    for rank in range(3):
        for check in ("signer", "plan_signatures", "chain", "final_signature", "transcript", "received_signatures",
                      "received_tensors", "sent_consistency", "initialization", "replay"):
            assert f"node{rank}.{check}" in names
    assert {"node0.data_commitment", "node2.data_commitment", "same_plan"} <= names
    assert "node1.data_commitment" not in names           # the middle node holds no data
    assert report.info["verify_fraction"] == 1.0          # 4 segments per node: all replayed


def test_without_trusted_keys_nodes_are_only_self_asserted(mlp_run: Path) -> None:
    report = verify_pipeline(mlp_run, keys={}, options=SplitVerifyOptions(seed=0))
    assert report.verdict == "self-asserted" and report.exit_code == 1 and report.blamed == []


def test_plan_signatures(mlp_copy: Path, node_keys: Path) -> None:
    from nacl.signing import SigningKey

    from pol.split.proof import NodeProofReader

    with NodeProofReader(node_proof_path(mlp_copy, 1)) as r:
        sigs = list(r.plan_signatures)
    sigs[0] = SigningKey.generate().sign(b"pol-split-plan-sig-v1" + b"another plan").signature
    rewrite_node(node_proof_path(mlp_copy, 1), key(node_keys, 1), plan_signatures=sigs)
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [1] and failed[1] == {"plan_signatures"}


def test_chain(mlp_copy: Path, node_keys: Path) -> None:
    with h5py.File(node_proof_path(mlp_copy, 2), "r+") as f:
        f["chain/state_digests"][2] = np.frombuffer(b"\x01" * 32, np.uint8)
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [2] and "chain" in failed[2]


def test_final_signature(mlp_copy: Path, node_keys: Path) -> None:
    with h5py.File(node_proof_path(mlp_copy, 0), "r+") as f:
        sig = f["signatures/final"][()]
        sig[5] ^= 1
        f["signatures/final"][...] = sig
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [0] and failed[0] == {"final_signature"}


def test_transcript_structure(mlp_copy: Path, node_keys: Path) -> None:
    def drop_last_received(segments):  # type: ignore[no-untyped-def]
        seg = segments[2]
        seg.received_headers, seg.received_tensors = seg.received_headers[:-1], seg.received_tensors[:-1]
        return segments

    rewrite_node(node_proof_path(mlp_copy, 1), key(node_keys, 1), edit_segments=drop_last_received)
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [1] and {"transcript", "replay"} <= failed[1]


def _edit_received(segments, index: int, new_tensor: np.ndarray, keep_header: bool):  # type: ignore[no-untyped-def]
    seg = segments[1]
    seg.received_tensors[index] = new_tensor
    if not keep_header:  # claim the sender signed the new tensor (it did not)
        h = Header.from_bytes(seg.received_headers[index])
        seg.received_headers[index] = dataclasses.replace(h, digest=tensor_digest(new_tensor)).to_bytes()
    return segments


@pytest.mark.parametrize("keep_header", [True, False])
def test_received_records_blame_the_receiver(mlp_copy: Path, node_keys: Path, keep_header: bool) -> None:
    """Node 1 records an input other than what node 0 signed: either the tensor alone
    (received_tensors) or with a header its sender never signed (received_signatures)."""
    from pol.split.proof import NodeProofReader

    with NodeProofReader(node_proof_path(mlp_copy, 1)) as r:
        original = r.transcript(1).received_tensors[0]
    rewrite_node(node_proof_path(mlp_copy, 1), key(node_keys, 1),
                 edit_segments=lambda s: _edit_received(s, 0, original * np.float32(2), keep_header))
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [1]        # not node 0, whose statement is intact
    assert ("received_tensors" if keep_header else "received_signatures") in failed[1]


def test_sent_consistency_blames_the_signer_of_both_statements(mlp_copy: Path, node_keys: Path) -> None:
    """Node 2 rewrites its own record of a gradient it sent (signing the new header itself);
    node 1 holds node 2's signature on the real one: node 2 signed two different statements."""
    from pol.split.messages import sign_header

    k2 = key(node_keys, 2)

    def rewrite_sent(segments):  # type: ignore[no-untyped-def]
        seg = segments[3]
        h = Header.from_bytes(seg.sent_headers[0])
        seg.sent_headers[0] = sign_header(dataclasses.replace(h, digest=b"\x07" * 32), k2).to_bytes()
        return segments

    rewrite_node(node_proof_path(mlp_copy, 2), k2, edit_segments=rewrite_sent)
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [2] and "sent_consistency" in failed[2]


def test_initialization(mlp_copy: Path, node_keys: Path) -> None:
    def other_start(states):  # type: ignore[no-untyped-def]
        for name in states[0]:
            if name.startswith("model/") and states[0][name].dtype == np.float32:
                states[0][name] = states[0][name] * np.float32(1.01)
        return states

    rewrite_node(node_proof_path(mlp_copy, 1), key(node_keys, 1), edit_states=other_start)
    verdict, blamed, failed = judge(mlp_copy, node_keys)
    assert verdict == "rejected" and blamed == [1] and "initialization" in failed[1]


def test_same_plan(mlp_copy: Path, node_keys: Path) -> None:
    """Node 2's proof holds another plan (one its partners never signed)."""
    import json

    from pol.hashing import canonical_json
    from pol.split.proof import NodeProofReader

    with NodeProofReader(node_proof_path(mlp_copy, 2)) as r:
        obj = json.loads(r.plan_bytes)
    obj["created_at"] = "2000-01-01T00:00:00+00:00"
    rewrite_node(node_proof_path(mlp_copy, 2), key(node_keys, 2), plan_bytes=canonical_json(obj))
    report = verify_pipeline(mlp_copy, keys=node_keys, options=SplitVerifyOptions(seed=0))
    assert report.verdict == "rejected" and report.blamed == [2]
    assert report.checks[0].name == "same_plan" and report.checks[0].passed is False
    failed2 = {c.name for c in report.nodes[2].failed}
    assert "plan_signatures" in failed2                   # nodes 0 and 1 never signed it


def test_data_commitment_recomputed_from_the_verifiers_data(mlp_run: Path) -> None:
    from pol.split.data import NodeData, training_columns
    from pol.split.proof import NodeProofReader
    from verifier.split.replay import data_check

    x, y = training_columns("digits-mlp", {})
    with NodeProofReader(node_proof_path(mlp_run, 0)) as r0, NodeProofReader(node_proof_path(mlp_run, 2)) as r2:
        assert data_check(r0, NodeData(x, None)).passed is True
        assert data_check(r2, NodeData(None, y)).passed is True
        x2 = x.clone()
        x2[7, 3] += 1.0
        y2 = y.clone()
        y2[0] = (y2[0] + 1) % 10
        assert data_check(r0, NodeData(x2, None)).passed is False
        assert data_check(r2, NodeData(None, y2)).passed is False


def test_one_node_judged_alone_from_its_proof_and_its_neighbours_headers(mlp_run: Path, node_keys: Path) -> None:
    """verify_node needs node 1's proof and the headers its neighbours recorded of its messages;
    without those headers sent_consistency cannot run, and the node is not 'verified'."""
    from verifier.split import neighbour_headers, open_run, verify_node

    readers = open_run(mlp_run)
    try:
        headers = neighbour_headers(readers)[1]
    finally:
        for r in readers.values():
            r.close()
    assert headers and all(len(h) == 177 for h in headers.values())
    report = verify_node(node_proof_path(mlp_run, 1), keys=node_keys, received_by_neighbours=headers,
                         options=SplitVerifyOptions(seed=0))
    assert report.verdict == "verified" and report.info["role"] == "middle"
    alone = verify_node(node_proof_path(mlp_run, 1), keys=node_keys, options=SplitVerifyOptions(seed=0))
    assert alone.verdict == "incomplete" and alone.check("sent_consistency").passed is None
    subset = verify_pipeline(mlp_run, keys=node_keys, options=SplitVerifyOptions(seed=0), nodes=[1])
    assert [r.info["rank"] for r in subset.nodes] == [1] and subset.verdict == "verified"
