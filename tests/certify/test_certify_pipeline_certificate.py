"""The pipeline certificate end to end: a 3-stage attested, committed run (``attested_run``), four
verifiers voting as real separate processes (``python -m pol split vote``), ``pol split certify``,
``pol split verify-certificate``; and the attacks: a commitment that does not open to the chain's
final weights, forged / duplicated / foreign / unknown votes, f lying verifiers (accepting a
forged node, rejecting an honest one with false evidence), a certificate re-judged under another
vendor root or another verifier list, a tampered certificate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from cli_runner import failed_checks, run_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _vote_processes(run: Path, keys: list[Path], votes: Path) -> list[dict]:
    """Each verifier votes in its own process (``python -m pol split vote``), all at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pol", "split", "vote", str(run), "--verifier-key", str(key),
                               "--out", str(votes), "--segments", "1", "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env) for key in keys]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        docs.append(json.loads(out))
    return docs


@pytest.fixture(scope="session")
def pipeline_votes(attested_run: tuple[Path, Path], verifier_keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Votes of the four trusted verifiers on every node (cast in this process, one after the
    other, each with its own key and seed: the attack tests start from them; the four-process
    flow is `test_four_verifier_processes_certify_and_the_certificate_verifies`)."""
    from certify.node_votes import cast_node_votes
    from pol.keys import load_signing_key

    votes = tmp_path_factory.mktemp("pipeline-votes") / "votes"
    digests = {cast_node_votes(attested_run[0], load_signing_key(key), votes, segments=1, seed=300 + i)[0]
               for i, (key, _) in enumerate(verifier_keys[:4])}
    assert len(digests) == 1
    return votes


def _certify(run: Path, votes: Path, verifiers_file: Path, capsys, f: int = 1):
    return run_json(["split", "certify", run, "--votes", votes, "--verifiers", verifiers_file, "--f", f], capsys)


def _verify(cert: Path, tee_dir: Path, verifiers_file: Path, capsys, *extra):
    return run_json(["split", "verify-certificate", cert, "--tee-root", tee_dir / "root.pub", "--verifiers",
                     verifiers_file, "--f", 1, *extra], capsys)


def _ignored(doc: dict, rank: int) -> list[str]:
    return [i["reason"] for i in doc["nodes"][rank]["ignored"]]


@pytest.fixture()
def run_copy(attested_run: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(attested_run[0], dst)
    (dst / "certificate.json").unlink(missing_ok=True)
    return dst


@pytest.mark.slow
def test_four_verifier_processes_certify_and_the_certificate_verifies(
        attested_run, verifier_keys, verifiers_file: Path, tee_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The whole flow with real processes: four `pol split vote` processes at once (each its own
    key and OS randomness), then `pol split certify` and `pol split verify-certificate`."""
    from certify.pipeline_certificate import certificate_digest, read_certificate

    run = tmp_path / "run"
    shutil.copytree(attested_run[0], run)
    votes = tmp_path / "votes"
    docs = _vote_processes(run, [key for key, _ in verifier_keys[:4]], votes)
    assert len({d["certificate_digest"] for d in docs}) == 1          # all computed the same subject
    assert len({d["verifier"] for d in docs}) == 4
    code, doc = _certify(run, votes, verifiers_file, capsys)
    assert code == 0 and doc["verdict"] == "verified"
    assert [n["verdict"] for n in doc["nodes"]] == ["accepted"] * 3
    assert all(len(n["accepting"]) == 4 and n["ignored"] == [] for n in doc["nodes"])
    cert = read_certificate(run / "certificate.json")
    assert certificate_digest(cert).hex() == doc["certificate_digest"]
    assert cert["simulated_tee"] is True and [n["rank"] for n in cert["nodes"]] == [0, 1, 2]
    for node in cert["nodes"]:
        assert node["attestation"]["node_public_key"] == node["public_key"]
        assert node["weights_commitment"]["binding"]["chain_head"] == node["chain_head"]
    assert len(cert["quorum"]["votes"]) == 12 and cert["quorum"]["decisions"] == {"0": "accepted", "1": "accepted",
                                                                                  "2": "accepted"}
    code, report = _verify(run / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 0 and report["verdict"] == "verified"
    assert {c["name"] for c in report["checks"]} == {f"node{r}.{n}" for r in range(3) for n in
                                                     ("proof", "attestation", "commitment", "transcript", "quorum")}
    # the per-node table on stderr
    code, out, err = _human(run / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 0 and "verdict: VERIFIED" in err and "attestation" in err and "SIMULATED TEE" in err
    # without pinned trust anchors nothing is vouched for: incomplete, exit 1
    code, report = run_json(["split", "verify-certificate", run / "certificate.json"], capsys)
    assert code == 1 and report["verdict"] == "incomplete"


def test_the_certificate_of_an_honest_run_verifies_node_by_node(
        attested_run, pipeline_votes: Path, verifiers_file: Path, tee_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(attested_run[0], run)
    code, doc = _certify(run, pipeline_votes, verifiers_file, capsys)
    assert code == 0 and [n["verdict"] for n in doc["nodes"]] == ["accepted"] * 3
    code, report = _verify(run / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 0 and report["verdict"] == "verified" and len(report["checks"]) == 15
    assert all(c["passed"] is True for c in report["checks"])


def _human(cert: Path, tee_dir: Path, verifiers_file: Path, capsys):
    from cli_runner import run_pol

    return run_pol(["split", "verify-certificate", cert, "--tee-root", tee_dir / "root.pub", "--verifiers",
                    verifiers_file, "--f", 1], capsys)


def test_forged_duplicated_foreign_and_unknown_votes_are_ignored(
        run_copy: Path, pipeline_votes: Path, verifier_keys, verifiers_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pol.keys import fingerprint, load_signing_key
    from scripts.attacks_split.votes import foreign_vote, forged_vote
    from verifier.vote import read_vote, write_vote

    votes = tmp_path / "votes"
    shutil.copytree(pipeline_votes, votes)
    keys = [load_signing_key(k) for k, _ in verifier_keys]
    fp = [fingerprint(bytes(k.verify_key))[:16] for k in keys]
    # v1's acceptance of node 0 replaced by a forgery flipping it to a rejection
    own = votes / f"{fp[0]}-node0.json"
    write_vote(forged_vote(read_vote(own)), own)
    shutil.copy(votes / f"{fp[1]}-node1.json", votes / "copy-of-v2-node1.json")         # duplicated
    write_vote(foreign_vote(2, keys[2]), votes / "v3-on-another-certificate.json")        # foreign
    write_vote(foreign_vote(2, keys[4]), votes / "v5-unknown.json")                       # unknown verifier
    code, doc = _certify(run_copy, votes, verifiers_file, capsys)
    assert code == 0 and [n["verdict"] for n in doc["nodes"]] == ["accepted"] * 3
    assert any(r.startswith("forged") for r in _ignored(doc, 0)) and len(doc["nodes"][0]["accepting"]) == 3
    assert any(r.startswith("duplicate of") for r in _ignored(doc, 1)) and len(doc["nodes"][1]["accepting"]) == 4
    assert any("another subject" in r for r in _ignored(doc, 2))
    assert any(r.startswith("unknown verifier") for r in _ignored(doc, 2))
    # with two forged acceptances node 0 no longer reaches 2f+1 = 3
    own = votes / f"{fp[1]}-node0.json"
    write_vote(forged_vote(read_vote(own)), own)
    code, doc = _certify(run_copy, votes, verifiers_file, capsys)
    assert code == 1 and doc["nodes"][0]["verdict"] == "undecided" and failed_checks(doc) == {"node0.quorum"}


def test_a_lying_verifier_rejecting_an_honest_node_with_false_evidence_changes_nothing(
        run_copy: Path, pipeline_votes: Path, verifier_keys, verifiers_file: Path, tee_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pol.keys import fingerprint, load_signing_key
    from scripts.attacks_split.votes import lying_node_vote
    from verifier.vote import write_vote

    votes = tmp_path / "votes"
    shutil.copytree(pipeline_votes, votes)
    liar = load_signing_key(verifier_keys[3][0])
    write_vote(lying_node_vote(run_copy, 1, liar, "reject-false-evidence"),
               votes / f"{fingerprint(bytes(liar.verify_key))[:16]}-node1.json")
    code, doc = _certify(run_copy, votes, verifiers_file, capsys)
    assert code == 0 and doc["nodes"][1]["verdict"] == "accepted" and len(doc["nodes"][1]["accepting"]) == 3
    assert any(r.startswith("false evidence") for r in _ignored(doc, 1))
    assert doc["nodes"][1]["evidence_findings"][0]["confirmed"] is False
    assert "replays to its committed checkpoint" in doc["nodes"][1]["evidence_findings"][0]["detail"]
    code, report = _verify(run_copy / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 0 and report["verdict"] == "verified"


def test_a_commitment_that_does_not_open_to_the_chains_final_weights_is_rejected(
        run_copy: Path, verifier_keys, verifiers_file: Path, tee_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Node 1 publishes, bound to its real chain, a commitment to weights 0.01 away from its final
    ones (the verifiers judge training, not commitments): the certificate check catches it by
    opening the commitment against the proof's final weights, and blames node 1 alone."""
    from certify.commitment import commit_final_weights
    from certify.node_commitment import commitment_path, model_tensors, node_binding, node_final_state
    from pol.hashing import canonical_json
    from pol.split.proof import NodeProofReader, node_proof_path

    with NodeProofReader(node_proof_path(run_copy, 1)) as reader:
        binding, weights = node_binding(reader), model_tensors(node_final_state(reader))
    name = sorted(weights)[0]
    weights[name].reshape(-1)[0] += np.float32(0.01)
    commitment_path(run_copy, 1).write_bytes(canonical_json(commit_final_weights(weights, binding)[0].to_json()))
    votes = tmp_path / "votes"
    votes.mkdir()                                        # no votes needed: the quorum is not what catches it
    code, doc = _certify(run_copy, votes, verifiers_file, capsys)
    assert code == 1                                     # (undecided: no votes)
    code, report = _verify(run_copy / "certificate.json", tee_dir, verifiers_file, capsys)
    failed = failed_checks(report)
    assert code == 1 and report["verdict"] == "rejected"
    assert "node1.commitment" in failed and not {"node0.commitment", "node2.commitment"} & failed
    assert not {f"node{r}.{c}" for r in range(3) for c in ("proof", "attestation", "transcript")} & failed
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "node1.commitment")
    assert "does not open to the chain's final weights" in detail


def test_the_certificate_is_rejudged_under_the_readers_own_trust_anchors(
        attested_run, pipeline_votes: Path, verifier_keys, verifiers_file: Path, tee_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Another vendor root pinned: every quote is rejected; another verifier list: no quorum; a
    certificate whose recorded node key or decision was edited: rejected (the votes no longer name it)."""
    from pol.cli import main

    run = tmp_path / "run"
    shutil.copytree(attested_run[0], run)
    code, _ = _certify(run, pipeline_votes, verifiers_file, capsys)
    assert code == 0
    other = tmp_path / "other-tee"
    with pytest.raises(SystemExit):
        main(["tee", "init", "--state", str(other)])
    capsys.readouterr()
    code, report = run_json(["split", "verify-certificate", run / "certificate.json", "--tee-root", other / "root.pub",
                             "--verifiers", verifiers_file, "--f", 1], capsys)
    assert code == 1 and failed_checks(report) == {f"node{r}.attestation" for r in range(3)}
    strangers = tmp_path / "strangers.txt"     # v5 and three keys that never voted
    strangers.write_text(f"{verifier_keys[4][1]}\n" + "".join(f"{k}\n" for k in ("11" * 32, "22" * 32, "33" * 32)))
    code, report = _verify(run / "certificate.json", tee_dir, strangers, capsys)
    assert code == 1 and failed_checks(report) == {f"node{r}.quorum" for r in range(3)}
    # a certificate edited after the votes: the votes name another digest
    cert = json.loads((run / "certificate.json").read_text())
    cert["quorum"]["decisions"]["1"] = "accepted"
    cert["nodes"][1]["chain_head"] = "00" * 32
    (run / "certificate.json").write_text(json.dumps(cert))
    code, report = _verify(run / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 1 and {"node1.proof", "node1.commitment"} <= failed_checks(report)
    assert {f"node{r}.quorum" for r in range(3)} <= failed_checks(report)
    cert["unexpected"] = 1
    (run / "certificate.json").write_text(json.dumps(cert))
    code, report = _verify(run / "certificate.json", tee_dir, verifiers_file, capsys)
    assert code == 2 and report["verdict"] == "error"


@pytest.fixture()
def forged_run(attested_run, tmp_path: Path) -> Path:
    """The attested run with node 1's proof forged after the fact by node 1 (its own key): its
    middle checkpoint is the interpolation of the first and the last; its weights re-committed."""
    from certify.node_commitment import commit_node
    from pol.keys import load_signing_key
    from pol.split.proof import node_proof_path
    from scripts.attacks_split.forgery import interpolation

    run, keys = attested_run
    out = interpolation(run, tmp_path / "forged", 1, load_signing_key(keys / "node1.key"))
    (out / "certificate.json").unlink(missing_ok=True)
    commit_node(node_proof_path(out, 1), out)
    return out


def test_a_lying_verifier_accepting_a_forged_node_changes_nothing(
        forged_run: Path, verifier_keys, verifiers_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from certify.node_votes import cast_node_votes
    from pol.keys import fingerprint, load_signing_key
    from scripts.attacks_split.votes import lying_node_vote
    from verifier.vote import write_vote

    votes = tmp_path / "votes"
    for i in range(3):
        digest, results = cast_node_votes(forged_run, load_signing_key(verifier_keys[i][0]), votes, segments=1,
                                          seed=20 + i)
        assert [r.verdict for r in results] == ["verified", "rejected", "verified"]
    liar = load_signing_key(verifier_keys[3][0])
    for rank in range(3):
        write_vote(lying_node_vote(forged_run, rank, liar, "accept"),
                   votes / f"{fingerprint(bytes(liar.verify_key))[:16]}-node{rank}.json")
    code, doc = _certify(forged_run, votes, verifiers_file, capsys)
    assert code == 1 and [n["verdict"] for n in doc["nodes"]] == ["accepted", "rejected", "accepted"]
    assert failed_checks(doc) == {"node1.quorum"}
    confirmed = doc["nodes"][1]["confirmed_rejections"]
    assert confirmed and "does not replay here" in confirmed[0]["finding"]
