"""Compact proofs: anchors only, challenges answered by exact replay, Fiat-Shamir responses."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import failed_checks, run_json, run_pol
from helpers_train import train_recorded

from pol.proof_file import ProofReader
from verifier.challenge import fiat_shamir_segments


@pytest.fixture(scope="module")
def compact_proof(tmp_path_factory: pytest.TempPathFactory, keys: dict) -> Path:
    return train_recorded(tmp_path_factory.mktemp("compact") / "c.pol.h5", keys["key"], steps=60, every=5, anchor=4)


def test_compact_proof_stores_anchors_and_commits_every_digest(compact_proof: Path) -> None:
    with ProofReader(compact_proof) as r:
        assert r.mode == "compact" and r.num_checkpoints == 13
        assert r.stored_checkpoints == [0, 4, 8, 12]
        assert len(r.state_digests) == 13


def test_verifier_regenerates_unstored_start_states(compact_proof: Path, keys: dict, capsys) -> None:  # noqa: ANN001
    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--segments", "12", "--seed", "0"], capsys)
    assert code == 0, doc
    sources = {f["segment"]: f["start"] for f in doc["segment_figures"]}
    assert sources[4] == "stored" and sources[5] == "regenerated"


def test_interactive_challenge_response_round_trip(compact_proof: Path, keys: dict, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    code, _, _ = run_pol(["challenge", compact_proof, "--out", ch, "--segments", "4", "--seed", "7"], capsys)
    assert code == 0
    segments = json.loads(ch.read_text())["segments"]
    code, out, _ = run_pol(["respond", compact_proof, "--challenge", ch, "--out", resp, "--json"], capsys)
    assert code == 0 and json.loads(out)["segments"] == segments
    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--response", resp], capsys)
    assert code == 0, doc
    assert doc["replayed_segments"] == segments
    assert "interactive" in doc["segment_selection"]
    assert all(f["start"] in ("response", "stored") for f in doc["segment_figures"])


def test_forged_response_state_is_rejected(compact_proof: Path, keys: dict, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    run_pol(["challenge", compact_proof, "--out", ch, "--segments", "3", "--seed", "1"], capsys)
    run_pol(["respond", compact_proof, "--challenge", ch, "--out", resp], capsys)
    with h5py.File(resp, "r+") as f:
        first = sorted(f["states"])[0]
        ds = f[f"states/{first}/model/fc2.bias"]
        ds[...] = ds[()] + np.float32(1e-4)
    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--response", resp], capsys)
    assert code == 1 and "replay" in failed_checks(doc)
    assert "committed digest" in doc["checks"][[c["name"] for c in doc["checks"]].index("replay")]["detail"]


def test_response_for_another_proof_exits_2(compact_proof: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                            capsys) -> None:  # noqa: ANN001
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    run_pol(["challenge", compact_proof, "--out", ch, "--segments", "2"], capsys)
    run_pol(["respond", compact_proof, "--challenge", ch, "--out", resp], capsys)
    code, out, err = run_pol(["verify", honest_proof, "--key", keys["pub"], "--response", resp], capsys)
    assert code == 2 and "different proof" in err


def test_non_interactive_response_is_bound_to_the_chain_head(compact_proof: Path, keys: dict, tmp_path: Path,
                                                             capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "ni.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    code, out, _ = run_pol(["respond", proof, "--non-interactive", "5", "--json"], capsys)
    assert code == 0
    with ProofReader(proof) as r:
        expected = fiat_shamir_segments(r.plan_digest, r.final["chain_head"], 12, 5)
    assert json.loads(out)["segments"] == expected
    code, doc = run_json(["verify", proof, "--key", keys["pub"]], capsys)
    assert code == 0 and doc["replayed_segments"] == expected and "grind" in doc["segment_selection"]
    with h5py.File(proof, "r+") as f:  # a prover answering segments of its own choosing
        f["responses"].attrs["segments"] = ",".join(str(s) for s in range(5))
    code, out, err = run_pol(["verify", proof, "--key", keys["pub"]], capsys)
    assert code == 2 and "derived from the chain head" in err
