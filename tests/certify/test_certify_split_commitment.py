"""Per-node final-weights commitments of a real pipeline run (``pol split train --commit``): each is
bound to its node's signed chain and opens to the chain's final weights for an auditor
(``pol split check-commitments``); a commitment to other weights, or one moved to another node,
does not; the node can prove it knows the opening without revealing it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from cli_runner import failed_checks, run_json  # noqa: E402


@pytest.fixture()
def run_copy(attested_run: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(attested_run[0], dst)
    return dst


def _final(run: Path, rank: int):
    from certify.node_commitment import model_tensors, node_binding, node_final_state
    from pol.split.proof import NodeProofReader, node_proof_path

    with NodeProofReader(node_proof_path(run, rank)) as reader:
        return node_binding(reader), model_tensors(node_final_state(reader))


def test_every_node_commitment_is_bound_to_its_chain_and_opens(attested_run: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from certify.node_commitment import commitment_path, load_commitment, opening_path

    run, _ = attested_run
    code, doc = run_json(["split", "check-commitments", run], capsys)
    assert code == 0 and doc["verdict"] == "verified"
    assert [c["name"] for c in doc["checks"]] == ["node0.commitment", "node1.commitment", "node2.commitment"]
    for rank in range(3):
        fwc = load_commitment(commitment_path(run, rank))
        binding, _ = _final(run, rank)
        assert fwc.binding == binding and binding.node == rank and binding.checkpoint == 2
        assert os.stat(opening_path(run, rank)).st_mode & 0o077 == 0        # the opening stays private
        text = commitment_path(run, rank).read_text()
        assert "blinding" not in text                                       # the public file carries none


def test_a_commitment_that_does_not_open_to_the_chains_final_weights_is_rejected(
        run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Node 1 commits, bound to its real chain, to weights one step of 0.01 away from its final ones."""
    from certify.commitment import commit_final_weights
    from certify.node_commitment import commitment_path
    from pol.hashing import canonical_json

    binding, weights = _final(run_copy, 1)
    name = sorted(weights)[0]
    nudged = {k: v.copy() for k, v in weights.items()}
    nudged[name].reshape(-1)[0] += np.float32(0.01)
    fwc, _ = commit_final_weights(nudged, binding)
    commitment_path(run_copy, 1).write_bytes(canonical_json(fwc.to_json()))
    code, doc = run_json(["split", "check-commitments", run_copy], capsys)
    assert code == 1 and failed_checks(doc) == {"node1.commitment"}
    detail = next(c["detail"] for c in doc["checks"] if c["name"] == "node1.commitment")
    assert "does not open to the chain's final weights" in detail


def test_a_commitment_moved_to_another_node_is_rejected(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from certify.node_commitment import commitment_path

    shutil.copy(commitment_path(run_copy, 0), commitment_path(run_copy, 2))   # node 0's, passed off as node 2's
    code, doc = run_json(["split", "check-commitments", run_copy], capsys)
    assert code == 1 and failed_checks(doc) == {"node2.commitment"}
    assert "bound to another chain, node" in next(c["detail"] for c in doc["checks"] if c["name"] == "node2.commitment")


def test_a_malformed_or_missing_commitment_is_unusable_input(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from certify.node_commitment import commitment_path

    doc = json.loads(commitment_path(run_copy, 1).read_text())
    doc["extra"] = 1
    commitment_path(run_copy, 1).write_text(json.dumps(doc))
    code, err_doc = run_json(["split", "check-commitments", run_copy], capsys)
    assert code == 2 and err_doc["verdict"] == "error" and "extra" in err_doc["error"]
    commitment_path(run_copy, 1).unlink()
    code, err_doc = run_json(["split", "check-commitments", run_copy], capsys)
    assert code == 2 and "--commit" in err_doc["error"]


def test_the_node_proves_it_knows_the_opening_without_revealing_it(attested_run: tuple[Path, Path]) -> None:
    from certify.commitment import prove_knowledge, verify_knowledge
    from certify.node_commitment import commitment_path, load_commitment, opening_path
    from zk import ProofRejected

    run, _ = attested_run
    fwc = load_commitment(commitment_path(run, 1))
    opening = json.loads(opening_path(run, 1).read_text())
    assert opening["commitment"] == fwc.digest().hex()
    blindings = [int(b, 16) for b in opening["blindings"]]
    _, weights = _final(run, 1)
    proof = prove_knowledge(fwc, weights, blindings, b"reader challenge 1")
    verify_knowledge(fwc, proof, b"reader challenge 1")
    with pytest.raises(ProofRejected):
        verify_knowledge(fwc, proof, b"another challenge")
    wrong = [b + 1 for b in blindings]   # not the opening: the proof does not verify
    with pytest.raises(ProofRejected):
        verify_knowledge(fwc, prove_knowledge(fwc, weights, wrong, b"reader challenge 2"), b"reader challenge 2")
