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


def test_compact_proof_stores_only_what_replay_cannot_recompute(compact_proof: Path) -> None:
    from pol.tasks import seeded_weights

    with ProofReader(compact_proof) as r:
        groups = r.h5["checkpoints"]
        assert groups["000000"].attrs["base"] == "seeded-model"
        assert [r.is_complete(i) for i in r.stored_checkpoints] == [True, True, True, False]
        assert all(r.stored_state_digest(i) == r.state_digests[i] for i in r.stored_checkpoints)
        first = r.checkpoint_state(0)
        seeded = seeded_weights(r.plan.model["spec"], r.plan.model.get("kwargs"), r.plan.seed)
        assert all(np.array_equal(first["model/" + k], v) for k, v in seeded.items())
        raw = sum(v.nbytes for v in seeded.values())
        assert groups["000000/deltas"].id.get_storage_size() < 0.02 * raw  # the initial weights are not stored again
        assert not any(k.startswith("optim/state/") for k in r.checkpoint_state(12))
        assert any(k.startswith("optim/state/") for k in r.checkpoint_state(8))


def test_compact_final_checkpoint_is_bound_by_the_digest_of_what_it_lacks(compact_proof: Path, keys: dict,
                                                                          tmp_path: Path, capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "swapped.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    with h5py.File(proof, "r+") as f:
        f["checkpoints/000012"].attrs["optimizer_state_digest"] = "00" * 32
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--segments", "2", "--seed", "0"], capsys)
    assert code == 1 and "chain" in failed_checks(doc)


def test_compact_checkpoint_0_needs_the_model_code(compact_proof: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pol.tasks
    from pol.errors import DataUnavailableError

    monkeypatch.delitem(pol.tasks.TASKS, "digits-mlp")  # as if the proof named a model that is not built in
    with ProofReader(compact_proof) as r, pytest.raises(DataUnavailableError, match="--model"):
        r.checkpoint_state(0)
    with ProofReader(compact_proof, model_spec="pol.tasks:_digits_mlp_model") as r:
        assert r.stored_state_digest(0) == r.state_digests[0]


def test_stack_that_seeds_another_model_fails_initialization(compact_proof: Path, keys: dict,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import pol.tasks
    import verifier.checks
    from verifier.api import VerifyOptions, verify

    real = pol.tasks.seeded_weights

    def other_stack(spec: str, kwargs: dict | None, seed: int) -> dict:
        weights = real(spec, kwargs, seed)
        name = min(weights)
        weights[name] = np.nextafter(weights[name], np.float32(np.inf))  # one ulp everywhere
        return weights

    monkeypatch.setattr(pol.tasks, "seeded_weights", other_stack)
    monkeypatch.setattr(verifier.checks, "seeded_weights", other_stack)
    report = verify(compact_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=1, seed=0))
    check = report.check("initialization")
    assert check.passed is False and "committed digest" in check.detail
    assert report.exit_code == 1


def test_checkpoint_claiming_to_lack_the_state_it_holds_exits_2(compact_proof: Path, keys: dict, tmp_path: Path,
                                                                capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "odd.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    with h5py.File(proof, "r+") as f:
        f["checkpoints/000008"].attrs["optimizer_state_digest"] = "00" * 32
    code, _, err = run_pol(["verify", proof, "--key", keys["pub"], "--segments", "2", "--seed", "0"], capsys)
    assert code == 2 and "holds optimizer state" in err and len(err.strip().splitlines()) == 1
