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
from verifier.challenge import fiat_shamir_choice


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
    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch], capsys)
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
    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch], capsys)
    assert code == 1 and "replay" in failed_checks(doc)
    assert "committed digest" in doc["checks"][[c["name"] for c in doc["checks"]].index("replay")]["detail"]


def test_response_for_another_proof_exits_2(compact_proof: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                            capsys) -> None:  # noqa: ANN001
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    run_pol(["challenge", compact_proof, "--out", ch, "--segments", "2"], capsys)
    run_pol(["respond", compact_proof, "--challenge", ch, "--out", resp], capsys)
    code, out, err = run_pol(["verify", honest_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch], capsys)
    assert code == 2 and "different proof" in err


def test_non_interactive_response_is_bound_to_the_chain_head(compact_proof: Path, keys: dict, tmp_path: Path,
                                                             capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "ni.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    code, out, _ = run_pol(["respond", proof, "--non-interactive", "5", "--non-interactive-steps", "3", "--json"],
                           capsys)
    assert code == 0
    with ProofReader(proof) as r:
        expected, steps = fiat_shamir_choice(r.plan_digest, r.final["chain_head"], 12, 5, 60, 3)
    assert json.loads(out)["segments"] == expected and json.loads(out)["steps"] == steps
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--use-embedded-response", "--top-updates", "0"], capsys)
    assert code == 0 and "grind" in doc["segment_selection"], doc
    assert set(expected) <= set(doc["replayed_segments"]) and doc["steps_challenged"] == 3
    code, doc = run_json(["verify", proof, "--key", keys["pub"]], capsys)  # by default the verifier chooses
    assert code == 0 and doc["segment_selection"].startswith("uniform, verifier's randomness")
    with h5py.File(proof, "r+") as f:  # a prover answering segments of its own choosing
        f["responses"].attrs["segments"] = ",".join(str(s) for s in range(5))
    code, out, err = run_pol(["verify", proof, "--key", keys["pub"], "--use-embedded-response"], capsys)
    assert code == 2 and "derived from the chain head" in err


def test_compact_proof_stores_only_what_replay_cannot_recompute(compact_proof: Path) -> None:
    from pol.tasks import seeded_weights

    with ProofReader(compact_proof) as r, h5py.File(compact_proof, "r") as f:
        groups = f["checkpoints"]
        assert groups["000000"].attrs["base"] == "seeded-model"
        assert [r.is_complete(i) for i in r.stored_checkpoints] == [True, True, True, False]
        assert all(r.stored_state_digest(i) == r.state_digests[i] for i in r.stored_checkpoints)
        first = r.checkpoint_state(0)
        seeded = seeded_weights(r.plan.model["spec"], r.plan.model.get("kwargs"), r.plan.run_seed)
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
    assert code == 1 and "checkpoints" in failed_checks(doc)


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
    import torch

    import pol.tasks
    from verifier.api import VerifyOptions, verify

    real = pol.tasks.seeded_model

    def other_stack(spec: str, kwargs: dict | None, seed: int):  # noqa: ANN202
        model = real(spec, kwargs, seed)
        with torch.no_grad():
            p = next(model.parameters())
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))  # one ulp everywhere
        return model

    monkeypatch.setattr(pol.tasks, "seeded_model", other_stack)  # this stack initialises differently
    report = verify(compact_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=1, seed=0))
    # checkpoint 0 of a compact proof is coded against the model this stack seeds: decoded here it is
    # not the committed state, and the committed digest says so
    assert report.check("checkpoints").passed is False and "committed state digest" in report.check("checkpoints").detail
    assert report.check("initialization").passed is False
    assert report.exit_code == 1


def test_checkpoint_claiming_to_lack_the_state_it_holds_exits_2(compact_proof: Path, keys: dict, tmp_path: Path,
                                                                capsys) -> None:  # noqa: ANN001
    proof = tmp_path / "odd.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    with h5py.File(proof, "r+") as f:
        f["checkpoints/000008"].attrs["optimizer_state_digest"] = "00" * 32
    code, _, err = run_pol(["verify", proof, "--key", keys["pub"], "--segments", "2", "--seed", "0"], capsys)
    assert code == 2 and "holds optimizer state" in err and len(err.strip().splitlines()) == 1


# -- the verifier, not the prover, chooses the segments ----------------------------------------
def _challenge_and_response(proof: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int = 7) -> tuple[Path, Path]:
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    assert run_pol(["challenge", proof, "--out", ch, "--segments", "4", "--seed", str(seed)], capsys)[0] == 0
    assert run_pol(["respond", proof, "--challenge", ch, "--out", resp], capsys)[0] == 0
    return ch, resp


@pytest.mark.parametrize("field", ["segments", "nonce"])
def test_response_to_a_rewritten_challenge_is_refused(compact_proof: Path, keys: dict, tmp_path: Path, field: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ch, resp = _challenge_and_response(compact_proof, tmp_path, capsys)
    issued = json.loads(ch.read_text())
    with h5py.File(resp, "r+") as f:  # the prover answers segments (or a challenge) of its own choosing
        embedded = json.loads(str(f.attrs["challenge"]))
        embedded[field] = [0, 4, 8] if field == "segments" else "00" * 16
        assert embedded[field] != issued[field]
        f.attrs["challenge"] = json.dumps(embedded)
    code, out, err = run_pol(["verify", compact_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch],
                             capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["pol: error: the response answers a different challenge than the one you issued"]


def test_response_needs_the_issued_challenge(compact_proof: Path, keys: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ch, resp = _challenge_and_response(compact_proof, tmp_path, capsys)
    for args in (["--response", resp], ["--challenge", ch]):
        code, _, err = run_pol(["verify", compact_proof, "--key", keys["pub"], *args], capsys)
        assert code == 2 and "--challenge go together" in err and len(err.strip().splitlines()) == 1


def test_short_embedded_response_is_refused(compact_proof: Path, keys: dict, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    proof = tmp_path / "short.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    code, out, _ = run_pol(["respond", proof, "--non-interactive", "1", "--json"], capsys)
    assert code == 0 and len(json.loads(out)["segments"]) == 1
    code, _, err = run_pol(["verify", proof, "--key", keys["pub"], "--use-embedded-response"], capsys)
    assert code == 2 and "fewer than the 4" in err
    code, doc = run_json(["verify", proof, "--key", keys["pub"]], capsys)  # the verifier's own draw
    assert code == 0 and doc["verifier_seed"] is not None and doc["segments_uniform"] == 4


def test_compact_proof_in_tolerance_mode_exits_2(compact_proof: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["verify", compact_proof, "--key", keys["pub"], "--mode", "tolerance"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "only in exact mode" in lines[0] and "--mode tolerance" in lines[0]


def test_regeneration_continues_from_the_latest_verified_state(compact_proof: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from verifier.segments import JudgeConfig, SegmentJudge
    from verifier.tolerance import Tolerance

    code, doc = run_json(["verify", compact_proof, "--key", keys["pub"], "--segments", "12", "--seed", "0"], capsys)
    assert code == 0 and doc["replayed_segments"] == list(range(12))
    assert doc["replayed_steps"] == 60  # every step once (it was 150: each start replayed again from its anchor)

    judge = SegmentJudge(JudgeConfig(str(compact_proof), "digits-mlp", "digits-mlp", "cpu", "exact", Tolerance(),
                                     False, 1))
    try:
        outcomes = [judge.judge(1), judge.judge(3)]  # anchor 0; segment 3 continues from checkpoint 2
    finally:
        judge.close()
    assert all(o.passed for o in outcomes), outcomes
    assert [o.replayed_steps for o in outcomes] == [10, 10]  # it was [10, 20]


def test_respond_with_a_custom_model(compact_proof: Path, keys: dict, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pol.tasks

    monkeypatch.delitem(pol.tasks.TASKS, "digits-mlp")  # as if the proof named code that is not built in
    custom = ["--model", "custom_digits:model", "--data", "custom_digits:data"]
    proof = tmp_path / "custom.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    assert run_pol(["challenge", proof, "--out", ch, "--segments", "12", *custom[:2]], capsys)[0] == 0
    code, _, err = run_pol(["respond", proof, "--challenge", ch, "--out", resp, *custom], capsys)
    assert code == 0, err  # checkpoint 0 decodes against the named model
    code, _, err = run_pol(["respond", proof, "--non-interactive", "5", *custom], capsys)
    assert code == 0, err
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--response", resp, "--challenge", ch, *custom], capsys)
    assert code == 0 and doc["replayed_segments"] == list(range(12))


def test_respond_to_a_cuda_proof_without_cuda_exits_2(compact_proof: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from pol.hashing import canonical_json

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proof = tmp_path / "cuda.pol.h5"
    proof.write_bytes(compact_proof.read_bytes())
    with h5py.File(proof, "r+") as f:
        plan = json.loads(f["plan"][()].tobytes())
        plan["environment"]["device_type"] = "cuda"
        del f["plan"]
        f.create_dataset("plan", data=np.frombuffer(canonical_json(plan), np.uint8))
    code, _, err = run_pol(["respond", proof, "--non-interactive", "4"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "'cuda'" in lines[0] and "internal error" not in lines[0]


def test_oversized_response_tensor_exits_2(compact_proof: Path, keys: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pol.proof_file import MAX_ELEMENTS

    ch, resp = _challenge_and_response(compact_proof, tmp_path, capsys)
    with h5py.File(resp, "r+") as f:  # declared, never written: HDF5 allocates no chunk
        first = min(f["states"])
        f[f"states/{first}"].create_dataset("model/huge", shape=(MAX_ELEMENTS + 1,), dtype="u1", chunks=(1 << 20,))
    assert resp.stat().st_size < 10 << 20
    code, out, err = run_pol(["verify", compact_proof, "--key", keys["pub"], "--response", resp, "--challenge", ch],
                             capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "budget" in lines[0]


@pytest.mark.parametrize("make, message", [
    (lambda f: f.create_dataset("states/000001/model/w", data=np.array([b"a", b"b"])), "only plain numbers"),
    (lambda f: f.create_dataset("states/000001", data=np.zeros(3, np.float32)), "must be a group"),
    (lambda f: f.create_dataset("other/000001", data=np.zeros(3, np.float32)), "unexpected entry"),
])
def test_response_states_of_the_wrong_kind_are_refused(compact_proof: Path, tmp_path: Path, make, message) -> None:  # noqa: ANN001
    from pol.errors import ProofFormatError
    from verifier.challenge import RESPONSE_FORMAT, RESPONSE_VERSION, read_response

    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": RESPONSE_FORMAT, "format_version": RESPONSE_VERSION, "challenge": "{}"})
        make(f)
    with ProofReader(compact_proof) as r, pytest.raises(ProofFormatError, match=message):
        read_response(path, r)
