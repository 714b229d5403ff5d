"""``pol split train|verify`` as a user runs them, ``torchrun``, compact proofs, and input that
cannot be judged (exit 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from cli_runner import run_json, run_pol  # noqa: E402

from pol.split.proof import node_proof_path  # noqa: E402


def test_train_creates_missing_keys_then_verify_prints_verified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, run = tmp_path / "keys", tmp_path / "run"
    code, doc = run_json(["split", "train", "--stages", "3", "--task", "digits-mlp", "--out", run, "--keys", keys,
                          "--steps", "8", "--every", "4"], capsys)
    assert code == 0 and len(doc["nodes"]) == 3
    assert all((keys / f"node{r}.key").exists() and (keys / f"node{r}.pub").exists() for r in range(3))
    assert {n["plan_digest"] for n in doc["nodes"]} == {doc["plan_digest"]}
    code, out, err = run_pol(["split", "verify", run, "--keys", keys], capsys)
    assert code == 0 and "verdict: VERIFIED" in err
    code, report = run_json(["split", "verify", run, "--keys", keys, "--seed", "1"], capsys)
    assert code == 0 and report["verdict"] == "verified" and report["blamed"] == []
    assert report["schema_version"] == 1 and {"name", "passed", "figure", "detail"} <= set(report["checks"][0])
    assert [n["rank"] for n in report["nodes"]] == [0, 1, 2]
    # a second train into the same directory must not silently overwrite the proofs
    code, out, err = run_pol(["split", "train", "--stages", "3", "--out", run, "--keys", keys, "--steps", "8"], capsys)
    assert code == 2 and "--force" in err


def test_verify_exits_1_naming_the_blamed_node(mlp_copy: Path, node_keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(node_proof_path(mlp_copy, 1), "r+") as f:
        f["chain/state_digests"][1] = np.zeros(32, np.uint8)
    code, report = run_json(["split", "verify", mlp_copy, "--keys", node_keys, "--seed", "0"], capsys)
    assert code == 1 and report["verdict"] == "rejected" and report["blamed"] == [1]
    assert report["nodes"][1]["blamed"] is True and "chain" in report["nodes"][1]["failed_checks"]
    assert report["nodes"][0]["blamed"] is False


@pytest.mark.parametrize("damage", ["missing-node", "garbage", "truncated", "bad-transcript", "plan-bytes",
                                    "single-process-proof"])
def test_input_that_cannot_be_judged_exits_2(damage: str, mlp_copy: Path, node_keys: Path,
                                             capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    target = node_proof_path(mlp_copy, 2)
    if damage == "single-process-proof":
        shutil.copy(request.getfixturevalue("honest_proof"), target)
    elif damage == "missing-node":
        target.unlink()
    elif damage == "garbage":
        target.write_bytes(b"not an hdf5 file")
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:4000])
    elif damage == "bad-transcript":
        with h5py.File(target, "r+") as f:
            del f["transcript/000002/received_headers"]
            f["transcript/000002"].create_dataset("received_headers", data=np.zeros((3, 5), np.uint8))
    else:
        with h5py.File(target, "r+") as f:
            del f["plan"]
            f.create_dataset("plan", data=np.frombuffer(b"{not json", np.uint8))
    code, out, err = run_pol(["split", "verify", mlp_copy, "--keys", node_keys], capsys)
    assert code == 2, err
    assert err.startswith("pol: error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("options, message", [
    (["--stages", "4"], "built-in splits into [2, 3] stages"),
    (["--stages", "2", "--labels-at", "first"], "at least 3 stages"),
    (["--micro-batches", "3"], "must divide the batch size 32"),
    (["--task", "no-such-task"], "no built-in split"),
])
def test_train_refuses_options_no_plan_can_be_built_from(options: list[str], message: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["split", "train", "--out", tmp_path / "run", "--keys", tmp_path / "keys", *options],
                             capsys)
    assert code == 2 and message in err and not (tmp_path / "run").exists()


def test_train_reports_the_node_that_stopped_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every node fails to import a stage module nobody has: the run stops, the first node to
    fail is named with its one-line error, the exit code is the node's (2: input)."""
    code, out, err = run_pol(["split", "train", "--stages", "2", "--out", tmp_path / "run", "--keys", tmp_path / "keys",
                              "--steps", "4", "--stage-module", "no_such_module:build",
                              "--stage-module", "no_such_module:build"], capsys)
    assert code == 2 and "stopped the run" in err and "cannot import 'no_such_module:build'" in err
    assert not list((tmp_path / "run").glob("node*.pol.h5"))   # nothing that could pass for a proof


def test_custom_stage_modules_train_and_verify_only_when_the_verifier_names_the_code(
        tmp_path: Path, node_keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.attacks_split import train_run

    run = tmp_path / "run"
    result = train_run(run, node_keys, args=["--stages", "2", "--steps", "6", "--every", "3",
                                             "--stage-module", "tests.split.custom_stages:bottom",
                                             "--stage-module", "tests.split.custom_stages:head"])
    assert result.ok, result.first_failure.stderr[-2000:] if result.first_failure else ""
    code, out, err = run_pol(["split", "verify", run, "--keys", node_keys], capsys)
    assert code == 2 and "never imports code named inside a proof" in err
    code, doc = run_json(["split", "verify", run, "--keys", node_keys, "--stage-module",
                          "0=tests.split.custom_stages:bottom", "--stage-module", "1=tests.split.custom_stages:head"],
                         capsys)
    assert code == 0 and doc["verdict"] == "verified"
    code, doc = run_json(["split", "verify", run, "--keys", node_keys, "--stage-module",     # other code: other init
                          "0=tests.split.custom_stages:head", "--stage-module", "1=tests.split.custom_stages:bottom"],
                         capsys)
    assert code == 1 and all({"initialization", "replay"} <= set(n["failed_checks"]) for n in doc["nodes"])


def test_verify_refuses_a_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["split", "verify", tmp_path / "nowhere", "--keys", tmp_path], capsys)
    assert code == 2 and "not found" in err


def test_torchrun_launches_the_same_nodes(tmp_path: Path, node_keys: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(node_keys, keys)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "pol.split.node", "--task", "digits-mlp", "--stages", "2", "--out", str(tmp_path / "run"),
           "--keys", str(keys), "--steps", "8", "--every", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from verifier.split import SplitVerifyOptions, verify_pipeline

    report = verify_pipeline(tmp_path / "run", keys=keys, options=SplitVerifyOptions(seed=0))
    assert report.verdict == "verified" and [r.info["stages"] for r in report.nodes] == [[0], [1]]


@pytest.fixture(scope="module")
def compact_run(tmp_path_factory: pytest.TempPathFactory, node_keys: Path) -> Path:
    """digits-mlp, 2 stages, 16 steps, k=4, K=2: checkpoints 0, 2 and 4 stored."""
    from scripts.attacks_split import train_run

    run = tmp_path_factory.mktemp("compact") / "run"
    result = train_run(run, node_keys, args=["--task", "digits-mlp", "--stages", "2", "--steps", "16", "--every", "4",
                                             "--compact", "2"])
    assert result.ok, result.first_failure.stderr[-2000:] if result.first_failure else ""
    return run


@pytest.fixture()
def compact_copy(tmp_path: Path, compact_run: Path) -> Path:
    shutil.copytree(compact_run, tmp_path / "run")
    return tmp_path / "run"


def test_compact_proofs_regenerate_unstored_starts_and_catch_a_lie_about_them(compact_copy: Path,
                                                                               node_keys: Path) -> None:
    """Segments 1 and 3 start from unstored checkpoints, regenerated by the verifier. A node that
    commits a false digest for an unstored checkpoint (re-chained, re-signed) fails replay."""
    from pol.keys import load_signing_key, sign
    from pol.split.proof import FINAL_SIGNATURE_DOMAIN, NodeProofReader, final_message, genesis, link
    from verifier.split import SplitVerifyOptions, verify_pipeline

    run = compact_copy
    with NodeProofReader(node_proof_path(run, 1)) as r:
        assert r.mode == "compact" and r.stored_checkpoints == [0, 2, 4]
    report = verify_pipeline(run, keys=node_keys, options=SplitVerifyOptions(seed=0))
    assert report.verdict == "verified"
    assert all(r.info["regenerated_steps"] > 0 for r in report.nodes)

    path = node_proof_path(run, 1)
    with NodeProofReader(path) as r:
        digests, transcripts, final_weights = list(r.state_digests), list(r.transcript_digests), r.final
        plan_digest = r.plan_digest
    digests[1] = b"\x05" * 32
    head = genesis(plan_digest, 1, digests[0])
    heads = [head]
    for i in range(1, len(digests)):
        head = link(head, digests[i], transcripts[i])
        heads.append(head)
    message = final_message(plan_digest, 1, head, final_weights["final_weights_digest"], len(digests), 16)
    with h5py.File(path, "r+") as f:
        f["chain/state_digests"][...] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
        f["chain/digests"][...] = np.frombuffer(b"".join(heads), np.uint8).reshape(-1, 32)
        f["signatures/final"][...] = np.frombuffer(sign(load_signing_key(node_keys / "node1.key"),
                                                        FINAL_SIGNATURE_DOMAIN, message), np.uint8)
        f["final"].attrs["chain_head"] = head.hex()
    report = verify_pipeline(run, keys=node_keys, options=SplitVerifyOptions(seed=0))
    failed = {c.name for c in report.nodes[1].failed}
    assert report.blamed == [1] and failed == {"replay"}


def test_challenge_response_for_a_compact_node_proof(compact_copy: Path, node_keys: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The verifier challenges node 1; the node regenerates its unstored starts; the verifier
    replays exactly its challenge from the response. A response with a wrong state fails node 1's
    replay; a response to another challenge cannot be judged."""
    challenge, response = tmp_path / "c.json", tmp_path / "r.h5"
    code, out, err = run_pol(["split", "challenge", compact_copy, "--node", "1", "--out", challenge, "--segments",
                              "4", "--seed", "3"], capsys)
    assert code == 0
    code, out, err = run_pol(["split", "respond", compact_copy, "--node", "1", "--challenge", challenge, "--out",
                              response], capsys)
    assert code == 0 and "[1, 3]" in err                 # the unstored starts it regenerated
    args = ["split", "verify", compact_copy, "--keys", node_keys, "--response", f"1={response}",
            "--challenge", f"1={challenge}"]
    code, doc = run_json(args, capsys)
    node1 = doc["nodes"][1]
    assert code == 0 and node1["replayed_segments"] == [0, 1, 2, 3] and node1["regenerated_steps"] == 0
    assert node1["segment_selection"].startswith("interactive")

    with h5py.File(response, "r+") as f:                 # the node returns another state for checkpoint 1
        from pol import codec

        g = f["states/000001"]
        state = codec.decode_checkpoint(codec.Encoded(*(g[p][()].tobytes() for p in ("index", "deltas", "plain"))), None)
        name = next(k for k in state if k.startswith("model/"))
        state[name] = state[name] + np.float32(1e-3)
        encoded = codec.encode_checkpoint(state, None)
        for part in ("index", "deltas", "plain"):
            del g[part]
            g.create_dataset(part, data=np.frombuffer(getattr(encoded, part), np.uint8))
    code, doc = run_json(args, capsys)
    assert code == 1 and doc["blamed"] == [1] and doc["nodes"][1]["failed_checks"] == ["replay"]

    other = tmp_path / "other.json"
    run_pol(["split", "challenge", compact_copy, "--node", "1", "--out", other, "--seed", "4"], capsys)
    code, out, err = run_pol(["split", "verify", compact_copy, "--keys", node_keys, "--response", f"1={response}",
                              "--challenge", f"1={other}"], capsys)
    assert code == 2 and "different challenge" in err
