"""``pol ownership``: an honest owner against a thief, a fine-tune lineage, independent runs, copies."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cli_runner import error_document, run_json, run_pol
from publish_helpers import forge_interpolation, record_run

FAST = ["--segments", "2", "--seed", "0"]


def ownership(weights: Path, claims: list[tuple[Path, Path | str]], capsys: pytest.CaptureFixture[str],
              *extra: str) -> tuple[int, dict]:
    args: list = ["ownership", "--weights", weights]
    for proof, key in claims:
        args += ["--claim", proof, "--key", key]
    return run_json([*args, *FAST, *extra], capsys)


def by_index(doc: dict) -> dict[int, dict]:
    return {c["index"]: c for c in doc["claims"]}


@pytest.fixture(scope="module")
def thief_proof(tmp_path_factory: pytest.TempPathFactory, honest_proof: Path, keys: dict) -> Path:
    return forge_interpolation(honest_proof, tmp_path_factory.mktemp("thief") / "thief.pol.h5", keys["other_key"])


def test_forged_proof_fails_replay_on_its_own(exported: Path, thief_proof: Path, keys: dict,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["verify", exported, "--proof", thief_proof, "--key", keys["other_pub"], *FAST], capsys)
    assert code == 1
    failed = {c["name"] for c in doc["checks"] if c["passed"] is False}
    assert "replay" in failed and "weights_match" not in failed
    passed = {c["name"] for c in doc["checks"] if c["passed"] is True}
    assert {"signer", "chain", "plan_signature", "final_signature", "initialization", "weights_match"} <= passed


def test_honest_owner_against_thief(exported: Path, honest_proof: Path, thief_proof: Path, keys: dict,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ownership(exported, [(thief_proof, keys["other_pub"]), (honest_proof, keys["pub"])], capsys)
    assert code == 0, doc
    assert doc["verdict"] == "owned" and doc["owner"] == 1
    claims = by_index(doc)
    assert claims[1]["verdict"] == "valid" and claims[1]["weights_match"] is True
    assert claims[0]["verdict"] == "rejected" and "replay" in claims[0]["failed_checks"]
    assert claims[0]["weights_match"] is True           # the thief does hold the weights ...
    assert doc["lineage"] == []                         # ... but started from its own seed
    assert not [f for f in doc["flags"] if f["kind"] == "plan-after-weights"]  # dates only matter between valid claims
    assert any("self-reported" in n and "timestamp authority" in n for n in doc["notes"])
    assert claims[0]["finished_at_signed"] is False and claims[0]["created_at_signed"] is True
    assert [c["passed"] for c in doc["checks"]] == [False, True]


def test_thief_alone_explains_nothing(exported: Path, thief_proof: Path, keys: dict,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ownership(exported, [(thief_proof, keys["other_pub"])], capsys)
    assert code == 1 and doc["verdict"] == "no-valid-claim" and doc["owner"] is None


@pytest.fixture(scope="module")
def finetune(tmp_path_factory: pytest.TempPathFactory, exported: Path, keys: dict) -> tuple[Path, Path]:
    """B: fine-tunes A's published weights (A = the honest proof), signed by the other key."""
    d = tmp_path_factory.mktemp("finetune")
    weights = d / "b.safetensors"
    proof = record_run(d / "b.pol.h5", keys["other_key"], seed=5, model_spec="pub_models:mlp_from_published",
                       model_kwargs={"path": str(exported)}, publish_to=weights)
    return proof, weights


def test_finetune_lineage(finetune: tuple[Path, Path], exported: Path, honest_proof: Path, keys: dict,
                          capsys: pytest.CaptureFixture[str]) -> None:
    b_proof, b_weights = finetune
    claims = [(honest_proof, keys["pub"]), (b_proof, keys["other_pub"])]
    code, doc = ownership(b_weights, claims, capsys, "--model", "pub_models:mlp_from_published")
    assert code == 0, doc
    assert doc["verdict"] == "owned" and doc["owner"] == 1
    c = by_index(doc)
    assert c[1]["verdict"] == "valid"
    assert c[0]["verdict"] == "valid-proof-other-weights" and c[0]["proof_verdict"] == "verified"
    assert c[1]["initial_weights_digest"] == c[0]["final_weights_digest"]
    assert [(e["child"], e["parent"], e["relation"]) for e in doc["lineage"]] == [(1, 0, "fine-tuned-from")]
    assert doc["lineage"][0]["timing"].startswith("consistent")
    assert "fine-tuned" in doc["explanation"]
    assert not [f for f in doc["flags"] if f["kind"] != "plan-after-weights"]
    # A's weights: A owns them; the lineage is still reported
    code, doc = ownership(exported, claims, capsys, "--model", "pub_models:mlp_from_published")
    assert code == 0 and doc["owner"] == 0
    assert by_index(doc)[1]["verdict"] == "valid-proof-other-weights"
    assert [(e["child"], e["parent"]) for e in doc["lineage"]] == [(1, 0)]


def test_finetune_needs_user_named_model_code(finetune: tuple[Path, Path], honest_proof: Path, keys: dict,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    b_proof, b_weights = finetune
    code, out, err = run_pol(["ownership", "--weights", b_weights, "--claim", b_proof, "--key", keys["other_pub"],
                              "--json"], capsys)
    assert code == 2 and error_document(out)["verdict"] == "error" and "--model" in err and "claim 0" in err


def test_independent_runs(tmp_path: Path, exported: Path, honest_proof: Path, keys: dict,
                          capsys: pytest.CaptureFixture[str]) -> None:
    c_weights = tmp_path / "c.safetensors"
    c_proof = record_run(tmp_path / "c.pol.h5", keys["other_key"], seed=11, publish_to=c_weights)
    claims = [(honest_proof, keys["pub"]), (c_proof, keys["other_pub"])]
    code, doc = ownership(exported, claims, capsys)
    assert code == 0 and doc["owner"] == 0
    assert [c["verdict"] for c in doc["claims"]] == ["valid", "valid-proof-other-weights"]
    assert doc["lineage"] == [] and doc["flags"] == []
    code, doc = ownership(c_weights, claims, capsys)
    assert code == 0 and doc["owner"] == 1
    assert [c["verdict"] for c in doc["claims"]] == ["valid-proof-other-weights", "valid"]
    assert doc["lineage"] == []


def test_copy_resigned_by_a_thief_is_found_and_blamed(tmp_path: Path, exported: Path, honest_proof: Path,
                                                      keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """The honest proof re-signed under the thief's key (and backdated): the trajectory is bound to the key that
    planned it, so the copy does not verify under the thief's key, and the shared states name the copier."""
    import pol
    from pol.assemble import assemble_proof, read_states, read_step_digests
    from pol.keys import load_signing_key

    with pol.ProofReader(honest_proof) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    key = load_signing_key(keys["other_key"])
    copy = tmp_path / "copy.pol.h5"
    backdated = "2001-01-01T00:00:00+00:00"
    assemble_proof(copy, dataclasses.replace(plan, signer=bytes(key.verify_key).hex(), created_at=backdated),
                   states, indices, key, steps, codec="raw")
    code, doc = ownership(exported, [(honest_proof, keys["pub"]), (copy, keys["other_pub"])], capsys)
    assert code == 0 and doc["verdict"] == "owned" and doc["owner"] == 0, doc
    claims = by_index(doc)
    assert claims[1]["verdict"] == "rejected" and {"initialization", "plan_consistency"} <= set(claims[1]["failed_checks"])
    copies = [f for f in doc["flags"] if f["kind"] == "copy"]
    assert [(f["claim"], f["origin"]) for f in copies] == [(1, 0)] and copies[0]["shared_steps"] == 40
    assert not [f for f in doc["flags"] if f["kind"] == "plan-after-weights"]  # backdating moves no blame


def test_self_asserted_claim_never_counts(exported: Path, honest_proof: Path, keys: dict,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ownership(exported, [(honest_proof, "-")], capsys)
    assert code == 1 and doc["verdict"] == "no-valid-claim"
    assert doc["claims"][0]["verdict"] == "self-asserted" and doc["claims"][0]["key"] is None
    assert "self-asserted" in doc["explanation"]


def test_wrong_key_for_a_claim(exported: Path, honest_proof: Path, keys: dict,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ownership(exported, [(honest_proof, keys["other_pub"])], capsys)
    assert code == 1 and doc["claims"][0]["verdict"] == "rejected"
    assert doc["claims"][0]["failed_checks"] == ["signer"]


def test_malformed_ownership_input_exit_2(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pol.h5"
    bad.write_text("no")
    code, out, err = run_pol(["ownership", "--weights", exported, "--claim", bad, "--key", keys["pub"]], capsys)
    assert code == 2 and "claim 0" in err
    code, out, err = run_pol(["ownership", "--weights", exported, "--claim", honest_proof], capsys)
    assert code == 2
    code, out, err = run_pol(["ownership", "--weights", exported, "--claim", honest_proof, "--key", keys["pub"],
                              "--key", keys["other_pub"]], capsys)
    assert code == 2 and "one --key per --claim" in err
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x00" * 3)
    code, out, err = run_pol(["ownership", "--weights", weights, "--claim", honest_proof, "--key", keys["pub"]], capsys)
    assert code == 2 and err.startswith("pol: error:")


def test_human_output(exported: Path, honest_proof: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["ownership", "--weights", exported, "--claim", honest_proof, "--key", keys["pub"],
                              *FAST], capsys)
    assert code == 0 and out == ""
    assert "claim 0: VALID" in err and "verdict: OWNED" in err and "self-reported" in err


def _synthetic(index: int, *, weights_match: bool = True, trusted: bool = True):
    from verifier.ownership import Claim, ClaimResult
    from verifier.report import Check, Report

    report = Report(f"w{index}", [Check("weights_match", weights_match), Check("signer", True if trusted else None),
                                  Check("replay", True)])
    return ClaimResult(index, Claim(f"c{index}.pol.h5", "k" if trusted else None), report, "f" * 40, "p", "", "",
                       f"final{index}", f"init{index}", {1: bytes([index])})


def test_decision_rules() -> None:
    from verifier.ownership import Ownership, _decide

    def decide(claims, lineage=()):
        own = Ownership("w", "d", claims, lineage=[{"child": c, "parent": p} for c, p in lineage])
        _decide(own)
        return own.verdict, own.owner, own.exit_code

    assert decide([_synthetic(0), _synthetic(1, weights_match=False)]) == ("owned", 0, 0)
    assert decide([_synthetic(0), _synthetic(1)]) == ("conflict", None, 1)
    assert decide([_synthetic(0), _synthetic(1)], [(1, 0)]) == ("lineage", 1, 0)
    assert decide([_synthetic(0), _synthetic(1), _synthetic(2)], [(1, 0)]) == ("conflict", None, 1)
    assert decide([_synthetic(0), _synthetic(1), _synthetic(2)], [(1, 0), (2, 1)]) == ("lineage", 2, 0)
    assert decide([_synthetic(0, trusted=False)]) == ("no-valid-claim", None, 1)
    assert decide([_synthetic(0, weights_match=False)]) == ("no-valid-claim", None, 1)


def test_each_claim_names_its_own_model_code(finetune: tuple[Path, Path], honest_proof: Path, keys: dict,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A fine-tune dispute: the child's model is custom code, the parent's is built in. `--model N=SPEC`
    gives the child its code and leaves the parent with the built-in one (a global --model would apply the
    child's code to the parent, whose checkpoints it does not fit)."""
    b_proof, b_weights = finetune
    claims = [(honest_proof, keys["pub"]), (b_proof, keys["other_pub"])]
    code, doc = ownership(b_weights, claims, capsys, "--model", "1=pub_models:mlp_from_published")
    assert code == 0 and doc["verdict"] == "owned" and doc["owner"] == 1, doc
    assert [c["verdict"] for c in doc["claims"]] == ["valid-proof-other-weights", "valid"]
    assert [(e["child"], e["parent"]) for e in doc["lineage"]] == [(1, 0)]
    code, out, err = run_pol(["ownership", "--weights", b_weights, "--claim", honest_proof, "--key", keys["pub"],
                              "--model", "5=pub_models:mlp_from_published"], capsys)
    assert code == 2 and "only 1 claims" in err
