"""``pol split train --attest`` (SIMULATED TEE): every node of a real 3-process pipeline attests
before the plan is signed; an honest run records the quotes, and a node in a debug enclave, one
measuring other code or configuration, one replaying an earlier quote (stale nonce), and one
whose quote binds another key than its proof's signer each stop the run before step one, with an
error naming that node and the reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from cli_runner import run_pol  # noqa: E402

TINY = ["--task", "digits-mlp", "--stages", "3", "--steps", "10", "--every", "5", "--micro-batches", "2"]
IMPL = "scripts.attacks_split.attestation"


def _run_with(tee_dir: Path, out: Path, keys: Path, impls: dict[int, tuple[str, dict]]):
    from scripts.attacks_split import train_run

    per_rank = {r: ["--node-impl", f"{IMPL}:{name}", "--node-impl-kwargs", json.dumps(kw)]
                for r, (name, kw) in impls.items()}
    return train_run(out, keys, args=[*TINY, "--attest", str(tee_dir)], per_rank=per_rank)


def test_an_honest_attested_run_records_a_quote_per_node_binding_its_signer(attested_run: tuple[Path, Path]) -> None:
    from certify.pipeline_attestation import ATTESTATION_FILE, node_policy
    from pol.split.proof import NodeProofReader, node_proof_path
    from tee_sim import Quote

    run, _ = attested_run
    doc = json.loads((run / ATTESTATION_FILE).read_text())
    assert doc["admitted"] is True and doc["simulated"] is True and doc["failures"] == {}
    assert [n["rank"] for n in doc["nodes"]] == [0, 1, 2]
    for node in doc["nodes"]:
        with NodeProofReader(node_proof_path(run, node["rank"])) as reader:
            assert node["node_public_key"] == reader.signer_public_key.hex()   # the quote binds the proof's signer
            assert node["plan_digest"] == reader.plan_digest.hex()
            assert node["stages"] == reader.plan.node_stages(node["rank"])
            expected = node_policy(reader.plan).expected[node["rank"]]
        assert node["verdict"] == "accepted (simulated)" and node["reasons"] == []
        assert node["expected_mr_enclave"] == expected.hex()
        quote = Quote.from_bytes(bytes.fromhex(node["quote"]))
        assert quote.body.mr_enclave == expected and quote.simulated
    assert len({n["nonce"] for n in doc["nodes"]}) == 3    # one fresh nonce per node
    assert len({n["expected_mr_enclave"] for n in doc["nodes"]}) == 3   # one measurement per stage


@pytest.mark.parametrize("impls, expected", [
    ({1: ("DebugEnclaveNode", {}), 2: ("WrongMeasurementNode", {})},
     {1: {"debug_enclave"}, 2: {"mr_enclave_not_allowed"}}),
    ({0: ("OtherKeyNode", {}), 2: ("ReplayedQuoteNode", {"replay_from": "{attestation}"})},
     {0: {"report_data_mismatch"}, 2: {"nonce_replayed", "nonce_not_issued_to_this_node"}}),
], ids=["debug-enclave+wrong-measurement", "other-key+replayed-quote"])
def test_a_node_failing_attestation_never_joins_and_is_named(impls: dict, expected: dict[int, set[str]],
                                                             attested_run: tuple[Path, Path], tee_dir: Path,
                                                             tmp_path: Path) -> None:
    from certify.pipeline_attestation import ATTESTATION_FILE

    honest_run, keys = attested_run
    impls = {r: (name, {k: v.replace("{attestation}", str(honest_run / ATTESTATION_FILE)) for k, v in kw.items()})
             for r, (name, kw) in impls.items()}
    run = tmp_path / "run"
    result = _run_with(tee_dir, run, keys, impls)
    assert not result.ok
    line = result.first_failure.error_line
    for rank, reasons in expected.items():
        assert f"node {rank} failed attestation (simulated TEE)" in line, line
        named = line.split(f"node {rank} failed attestation (simulated TEE): ")[1].split(";")[0]
        assert reasons <= set(named.split(", ")), line
    honest = set(range(3)) - set(expected)
    assert not any(f"node {r} failed" in line for r in honest), line
    assert not list(run.glob("node*.pol.h5"))             # stopped before step one: no proof written
    doc = json.loads((run / ATTESTATION_FILE).read_text())
    assert doc["admitted"] is False and set(doc["failures"]) == {str(r) for r in expected}
    for rank, reasons in expected.items():
        assert reasons <= set(doc["failures"][str(rank)])


def test_attest_without_a_tee_state_is_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["split", "train", *TINY, "--out", tmp_path / "run", "--keys", tmp_path / "keys",
                              "--attest", tmp_path / "nothing"], capsys)
    assert code == 2 and "pol tee init" in err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("node*.pol.h5"))


def test_judging_names_the_node_whose_answer_is_malformed(attested_run: tuple[Path, Path], tee_dir: Path) -> None:
    """A node that sends garbage instead of a quote fails as 'malformed_answer' / 'malformed_quote'."""
    from certify.pipeline_attestation import judge_answers, make_checker
    from pol.split.proof import NodeProofReader, node_proof_path

    run, _ = attested_run
    with NodeProofReader(node_proof_path(run, 0)) as reader:
        plan = reader.plan
    checker = make_checker(tee_dir, plan)
    issued = [checker.issue_nonce() for _ in range(3)]
    records, failures = judge_answers(checker, plan, issued, [None, (issued[1], b"not a quote"), None])
    assert failures == {0: ["malformed_answer"], 1: ["malformed_quote"], 2: ["malformed_answer"]}
    assert records == []
