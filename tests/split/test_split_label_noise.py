"""Label protection committed in the plan (``--label-noise``): the noise follows its documented
rule from the committed secret, honest protected runs verify, and only the label owner's
verifier needs the secret."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pol.errors import InputError, PlanError, ProofFormatError
from pol.split import label_noise as LN
from pol.split.messages import BACKWARD, MessageRejected
from pol.split.plan import PipelinePlan
from pol.split.planning import SplitConfig, build_plan, parse_contributions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from cli_runner import run_json  # noqa: E402

SECRET = bytes(range(32))


def noisy_plan(option: str = "iso:2") -> PipelinePlan:
    cfg = SplitConfig(stages=3, steps=20, label_noise=option)
    contrib = [{"rank": r, "public_key": (bytes([r + 1]) * 32).hex(), "environment": {"threads": 1}} for r in range(3)]
    contrib[0]["features"] = {"merkle_root": "aa" * 32, "num_samples": 1500}
    contrib[2]["labels"] = {"merkle_root": "bb" * 32, "num_samples": 1500}
    contrib[2]["label_noise_commitment"] = LN.commitment(SECRET)
    return build_plan(cfg, contrib, "00" * 16, "2024-01-01T00:00:00+00:00")


# -- the rule -----------------------------------------------------------------------------------

def test_option_parsing() -> None:
    assert LN.parse_option(None) is None
    assert LN.parse_option("iso") == ("iso", 1.0) and LN.parse_option("iso:0.25") == ("iso", 0.25)
    assert LN.parse_option("max_norm") == ("max_norm", 1.0)
    for bad in ("gauss", "iso:x", "iso:0", "iso:-1", "iso:nan", "iso:", "max_norm:2"):
        with pytest.raises(PlanError):
            LN.parse_option(bad)


def test_noise_is_a_function_of_secret_step_and_micro_batch() -> None:
    g = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    noise = LN.LabelNoise("iso", 1.0, SECRET)
    a = noise.apply(g, 3, 1)
    assert torch.equal(a, noise.apply(g.clone(), 3, 1))                          # replays bitwise
    assert not torch.equal(a, g)
    for other in (noise.apply(g, 3, 0), noise.apply(g, 4, 1), LN.LabelNoise("iso", 1.0, bytes(32)).apply(g, 3, 1)):
        assert not torch.equal(a, other)


def test_iso_noise_scale_follows_the_ratio() -> None:
    g = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    biggest = float(g.norm(dim=1).max())
    for ratio in (0.5, 4.0):
        added = LN.LabelNoise("iso", ratio, SECRET).apply(g, 0, 0) - g
        assert float(added.norm(dim=1).mean()) == pytest.approx(ratio * biggest, rel=0.05)


def test_max_norm_noise_equalises_expected_norms_and_spares_the_largest_row() -> None:
    g = torch.randn(32, 64, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.1, 3.0, 32)[:, None]
    noise = LN.LabelNoise("max_norm", 1.0, SECRET)
    top = int(g.norm(dim=1).argmax())
    squared = torch.stack([noise.apply(g, t, 0).norm(dim=1) ** 2 for t in range(300)]).mean(0)
    assert torch.equal(noise.apply(g, 0, 0)[top], g[top])                        # no noise on the largest
    assert torch.allclose(squared, torch.full_like(squared, float(g[top].norm() ** 2)), rtol=0.06)
    assert float(g.norm(dim=1).min() ** 2) < 0.01 * float(g[top].norm() ** 2)    # the rows did differ


# -- the plan -----------------------------------------------------------------------------------

def test_the_plan_commits_kind_ratio_and_the_secret_only_as_a_hash() -> None:
    plan = noisy_plan()
    entry = plan.extra["label_noise"]
    assert entry == {"kind": "iso", "ratio": 2.0, "commitment": LN.commitment(SECRET), "rule": LN.NOISE_RULE}
    assert SECRET.hex() not in plan.to_bytes().decode()
    assert PipelinePlan.from_bytes(plan.to_bytes()) == plan
    assert LN.opening_valid(plan, SECRET) and not LN.opening_valid(plan, bytes(32))
    assert LN.for_node(plan, 2, SECRET) == LN.LabelNoise("iso", 2.0, SECRET)
    assert LN.for_node(plan, 1, None) is None                                    # only the head adds noise
    with pytest.raises(InputError, match="secret"):
        LN.for_node(plan, 2, None)


@pytest.mark.parametrize("change", [
    {"kind": "laplace"}, {"ratio": 0.0}, {"ratio": 1}, {"commitment": "ab"}, {"rule": "something else"}, {"extra": 1},
])
def test_a_malformed_noise_entry_is_refused(change: dict) -> None:
    plan = noisy_plan()
    entry = {**plan.extra["label_noise"], **change}
    raw = dataclasses.replace(plan, extra={"label_noise": entry}).to_bytes()
    with pytest.raises(ProofFormatError, match="label_noise"):
        PipelinePlan.from_bytes(raw)


def test_only_the_label_owner_contributes_a_noise_commitment() -> None:
    cfg = SplitConfig(stages=3, steps=20, label_noise="iso")

    def raw(owner: int | None) -> list[bytes]:
        out = []
        for r in range(3):
            c = {"rank": r, "public_key": (bytes([r + 1]) * 32).hex(), "environment": {}}
            if r == 0:
                c["features"] = {"merkle_root": "aa" * 32, "num_samples": 1500}
            if r == 2:
                c["labels"] = {"merkle_root": "bb" * 32, "num_samples": 1500}
            if r == owner:
                c["label_noise_commitment"] = LN.commitment(SECRET)
            out.append(json.dumps(c).encode())
        return out

    assert len(parse_contributions(raw(2), cfg)) == 3
    for owner in (None, 1):
        with pytest.raises(MessageRejected, match=f"node {1 if owner == 1 else 2}"):
            parse_contributions(raw(owner), cfg)
    with pytest.raises(MessageRejected):                                         # no noise asked for
        parse_contributions(raw(2), dataclasses.replace(cfg, label_noise=None))


def test_secret_file_round_trip_and_refusals(tmp_path: Path) -> None:
    path = LN.write_secret(LN.secret_path(tmp_path, 2), SECRET)
    assert path.name == "node2.label-noise-secret.json" and LN.read_secret(path) == SECRET
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(InputError, match="exists"):
        LN.write_secret(path, SECRET)
    for content in (b"{}", b"not json", json.dumps({"format": LN.SECRET_FORMAT, "version": 1, "secret": "ab"}).encode()):
        path.write_bytes(content)
        with pytest.raises(InputError, match="is not a"):
            LN.read_secret(path)


# -- real runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory: pytest.TempPathFactory, node_keys: Path) -> Path:
    """The conftest's 3-stage plain digits-mlp run (same seed, same schedule), with --label-noise iso:1."""
    from tests.split.conftest import train

    return train(tmp_path_factory.mktemp("noisy") / "run", node_keys, "--task", "digits-mlp", "--stages", "3",
                 "--label-noise", "iso:1")


def _received(run: Path, rank: int, step: int) -> dict[tuple[int, int], np.ndarray]:
    from pol.split.proof import NodeProofReader, node_proof_path

    with NodeProofReader(node_proof_path(run, rank)) as reader:
        seg = reader.transcript(1)
        return {(h.micro_batch, h.sender_stage): t for h, t in zip(seg.received(), seg.received_tensors)
                if h.step == step and h.direction == BACKWARD}


def test_the_head_sends_exactly_the_committed_noise(noisy_run: Path, mlp_run: Path) -> None:
    """At step 0 the head's clean gradient is the noise-free run's (same seed, same init, same
    batch): what node 1 received must be that gradient plus the rule's noise from the secret in
    the label owner's file, bitwise; node 0, downstream of a non-head stage, gets no noise added."""
    secret = LN.read_secret(LN.secret_path(noisy_run, 2))
    noise = LN.LabelNoise("iso", 1.0, secret)
    noisy, clean = _received(noisy_run, 1, 0), _received(mlp_run, 1, 0)
    assert sorted(noisy) == sorted(clean) == [(0, 2), (1, 2)]
    for (j, _), g in clean.items():
        sent = noise.apply(torch.from_numpy(g), 0, j).numpy()
        assert np.array_equal(noisy[(j, 2)], sent)
        assert not np.array_equal(noisy[(j, 2)], g)
        assert not np.array_equal(noisy[(j, 2)], LN.LabelNoise("iso", 1.0, bytes(32)).apply(torch.from_numpy(g), 0, j).numpy())


def test_an_honest_protected_run_verifies_and_only_the_label_owner_needs_the_secret(
        noisy_run: Path, node_keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["split", "verify", noisy_run, "--keys", node_keys, "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified"
    assert {c["name"]: c["passed"] for c in doc["checks"]}["node2.label_noise_opening"] is True
    assert not any(c["name"].startswith(("node0.label_noise", "node1.label_noise")) for c in doc["checks"])
    run = tmp_path / "run"                                     # the proofs without the secret file
    shutil.copytree(noisy_run, run, ignore=shutil.ignore_patterns("*.json"))
    code, doc = run_json(["split", "verify", run, "--keys", node_keys, "--node", "0", "--node", "1"], capsys)
    assert code == 0 and doc["verdict"] == "verified"
    code, doc = run_json(["split", "verify", run, "--keys", node_keys], capsys)
    assert code == 2 and "--label-noise-secret" in doc["error"]
    code, doc = run_json(["split", "verify", run, "--keys", node_keys, "--label-noise-secret",
                          LN.secret_path(noisy_run, 2), "--seed", "0"], capsys)
    assert code == 0


def test_a_wrong_secret_fails_the_opening_and_the_replay_blaming_the_label_owner(
        noisy_run: Path, node_keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = LN.write_secret(tmp_path / "wrong.json", bytes(32))
    code, doc = run_json(["split", "verify", noisy_run, "--keys", node_keys, "--node", "2", "--seed", "0",
                          "--label-noise-secret", wrong], capsys)
    assert code == 1 and doc["blamed"] == [2]
    assert {"label_noise_opening", "replay"} <= set(doc["nodes"][0]["failed_checks"])


def test_replay_checks_the_noise_rule(noisy_run: Path, node_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a label owner that drew its noise by another rule (here: the next
    micro-batch's draw) is caught by the replay of its sent digests, with the right secret."""
    from verifier.split import SplitVerifyOptions, verify_pipeline

    draw = LN.LabelNoise.draw
    monkeypatch.setattr(LN.LabelNoise, "draw", lambda self, t, j, shape: draw(self, t, j + 1, shape))
    report = verify_pipeline(noisy_run, keys=node_keys, options=SplitVerifyOptions(seed=0), nodes=[2])
    assert report.exit_code == 1 and report.blamed == [2]
    assert [c.name for c in report.nodes[0].failed] == ["replay"]
    assert "gradient of stage 2" in report.nodes[0].check("replay").detail


def test_a_protected_label_owner_answers_a_challenge_on_its_compact_proof(
        node_keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Compact proof, 2 stages (node 1 holds the head and the labels), max_norm noise: node 1
    regenerates its unstored starts with its secret; the verifier replays the challenge with it.
    Without the secret file the node cannot even answer (exit 2)."""
    from cli_runner import run_pol
    from scripts.attacks_split import train_run

    run = tmp_path / "run"
    result = train_run(run, node_keys, args=["--task", "digits-mlp", "--stages", "2", "--steps", "16", "--every", "4",
                                             "--compact", "2", "--label-noise", "max_norm"])
    assert result.ok, result.first_failure.stderr[-2000:] if result.first_failure else ""
    challenge, response = tmp_path / "c.json", tmp_path / "r.h5"
    assert run_pol(["split", "challenge", run, "--node", "1", "--out", challenge, "--segments", "4", "--seed", "3"],
                   capsys)[0] == 0
    secret = LN.secret_path(run, 1)
    hidden = secret.rename(tmp_path / "secret.json")
    code, out, err = run_pol(["split", "respond", run, "--node", "1", "--challenge", challenge, "--out", response],
                             capsys)
    assert code == 2 and "--label-noise-secret" in err
    hidden.rename(secret)
    code, out, err = run_pol(["split", "respond", run, "--node", "1", "--challenge", challenge, "--out", response],
                             capsys)
    assert code == 0 and "[1, 3]" in err
    code, doc = run_json(["split", "verify", run, "--keys", node_keys, "--response", f"1={response}",
                          "--challenge", f"1={challenge}"], capsys)
    assert code == 0 and doc["nodes"][1]["replayed_segments"] == [0, 1, 2, 3]
    assert {c["name"]: c["passed"] for c in doc["checks"]}["node1.label_noise_opening"] is True


@pytest.mark.parametrize("impl", [
    "UnprotectedHead",
    pytest.param("UncommittedNoiseHead", marks=pytest.mark.slow),
])
def test_a_label_owner_that_deviates_from_the_committed_noise_fails_replay(
        impl: str, node_keys: Path, tmp_path: Path) -> None:
    """A real run whose label owner (node 2) commits iso noise and then sends its clean gradients
    (or noise from a secret it never committed), signed: its own verifier, holding the committed
    secret, rejects its replay and blames it; nodes 0 and 1 still verify."""
    from scripts.attacks_split import train_run
    from tests.split.conftest import SMALL
    from verifier.split import SplitVerifyOptions, verify_pipeline

    run = tmp_path / "run"
    result = train_run(run, node_keys, args=["--task", "digits-mlp", "--stages", "3", "--label-noise", "iso:1", *SMALL],
                       per_rank={2: ["--node-impl", f"tests.split.label_noise_nodes:{impl}"]})
    assert result.ok, result.first_failure.stderr[-2000:] if result.first_failure else ""
    report = verify_pipeline(run, keys=node_keys, options=SplitVerifyOptions(seed=0))
    assert report.exit_code == 1 and report.blamed == [2]
    owner = next(r for r in report.nodes if r.info["rank"] == 2)
    assert [c.name for c in owner.failed] == ["replay"]
    assert owner.check("label_noise_opening").passed                 # the secret it holds is the committed one
