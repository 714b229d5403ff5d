"""Exporting and publishing weights, their manifest digest, and the model-card snippet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_json, run_pol
from publish_helpers import record_run
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pol.errors import PlanError
from pol.keys import fingerprint, load_verify_key


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def test_export_writes_final_weights_with_proof_metadata(honest_proof: Path, tmp_path: Path, keys: dict,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.safetensors"
    code, out_text, err = run_pol(["export", honest_proof, "--out", out], capsys)
    assert code == 0, err
    code, info = run_json(["inspect", honest_proof], capsys)
    meta = _metadata(out)
    assert meta["pol.plan_digest"] == info["plan_digest"]
    assert meta["pol.chain_head"] == info["chain_head"]
    assert meta["pol.proof_digest"] == f"{info['plan_digest']}:{info['chain_head']}"
    assert meta["pol.final_weights_digest"] == info["final_weights_digest"]
    assert meta["pol.signer_fingerprint"] == fingerprint(load_verify_key(keys["pub"]))
    tensors = load_file(str(out))
    assert sorted(tensors) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    assert all(t.dtype == torch.float32 for t in tensors.values())
    # an existing file is not overwritten without --force
    code, _, err = run_pol(["export", honest_proof, "--out", out], capsys)
    assert code == 2 and "--force" in err


def test_recorder_publish_equals_export(tmp_path: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    proof, published = tmp_path / "run.pol.h5", tmp_path / "published.safetensors"
    record_run(proof, keys["key"], publish_to=published)
    exported = tmp_path / "exported.safetensors"
    assert run_pol(["export", proof, "--out", exported], capsys)[0] == 0
    a, b = load_file(str(published)), load_file(str(exported))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metadata(published) == _metadata(exported)
    assert run_pol(["digest", published], capsys)[1] == run_pol(["digest", exported], capsys)[1]


def test_publish_refuses_weights_that_are_not_the_proof_s(tmp_path: Path, keys: dict) -> None:
    import pol

    proof = record_run(tmp_path / "run.pol.h5", keys["key"])
    model = pol.seeded_model("digits-mlp", {}, 0)
    from pol.publish import publish_model

    with pytest.raises(PlanError, match="not the proof's final weights"):
        publish_model(model, tmp_path / "x.safetensors", proof)
    assert not (tmp_path / "x.safetensors").exists()


def test_digest_equals_the_signed_final_weights_digest(exported: Path, honest_proof: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pol(["digest", exported], capsys)
    _, info = run_json(["inspect", honest_proof], capsys)
    assert code == 0 and out.strip() == info["final_weights_digest"]


def test_digest_is_stable_across_layout_and_names_every_tensor(exported: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    tensors = load_file(str(exported))
    reordered = tmp_path / "reordered.safetensors"
    # different insertion order, different metadata, a padding tensor-free layout of other copies
    save_file({k: tensors[k].clone() for k in sorted(tensors, reverse=True)}, str(reordered),
              metadata={"note": "other layout", "and": "more metadata to shift every offset"})
    assert reordered.read_bytes() != exported.read_bytes()
    code, a = run_json(["digest", exported], capsys)
    code2, b = run_json(["digest", reordered], capsys)
    assert code == code2 == 0
    assert a["digest"] == b["digest"] and a["tensors"] == b["tensors"]
    assert set(a["tensors"]) == set(tensors)
    assert a["tensors"]["fc1.weight"] == {"dtype": "float32", "shape": [64, 64], "digest": a["tensors"]["fc1.weight"]["digest"]}
    assert len({t["digest"] for t in a["tensors"].values()}) == len(tensors)
    # a renamed tensor or one changed value changes both the overall and that tensor's digest
    renamed = tmp_path / "renamed.safetensors"
    save_file({("x." + k if k == "fc2.bias" else k): v for k, v in tensors.items()}, str(renamed))
    edited = tmp_path / "edited.safetensors"
    changed = dict(tensors)
    changed["fc1.bias"] = tensors["fc1.bias"].clone()
    changed["fc1.bias"][3] += 1e-6
    save_file(changed, str(edited))
    _, c = run_json(["digest", renamed], capsys)
    _, d = run_json(["digest", edited], capsys)
    assert c["digest"] != a["digest"] and d["digest"] != a["digest"]
    assert d["tensors"]["fc1.bias"]["digest"] != a["tensors"]["fc1.bias"]["digest"]
    assert d["tensors"]["fc1.weight"] == a["tensors"]["fc1.weight"]


def test_card_names_proof_signer_data_and_command(honest_proof: Path, keys: dict,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["card", "--proof", honest_proof, "--weights", "model.safetensors"], capsys)
    assert code == 0, err
    _, info = run_json(["inspect", honest_proof], capsys)
    lines = out.splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    front = "\n".join(lines[1:end])
    fpr = fingerprint(load_verify_key(keys["pub"]))
    assert f'signer_fingerprint: "{fpr}"' in front
    assert f'proof_digest: "{info["plan_digest"]}:{info["chain_head"]}"' in front
    assert f'merkle_root: "{info["data"]["merkle_root"]}"' in front
    command = f"pol verify model.safetensors --proof {honest_proof} --key {fpr}"
    assert f'verify: "{command}"' in front
    assert "## Proof of learning" in out and command in lines[end + 1:]


def test_card_command_verifies(exported: Path, honest_proof: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_pol(["card", "--proof", honest_proof, "--weights", exported], capsys)
    command = next(line for line in out.splitlines() if line.startswith("pol verify "))
    args = command.split()[1:]
    code, doc = run_json([*args, "--segments", "1", "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified", doc


def test_keygen_secret_key_is_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pol(["keygen", "--out", tmp_path / "k" / "me"], capsys)
    assert code == 0
    assert (tmp_path / "k" / "me.key").stat().st_mode & 0o777 == 0o600
    assert out.strip() == fingerprint(load_verify_key(tmp_path / "k" / "me.pub"))


def test_export_json_summary(honest_proof: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["export", honest_proof, "--out", tmp_path / "m.safetensors"], capsys)
    assert code == 0 and doc["tensors"] == 4 and doc["pol.format"] == "pol-published-v1"
    code, _, err = run_pol(["export", honest_proof, "--out", tmp_path / "m.pt"], capsys)
    assert code == 2 and ".safetensors" in err
    assert json.loads(json.dumps(doc))  # plain JSON


def test_publish_before_the_last_step_is_refused(tmp_path: Path, keys: dict) -> None:
    import pol
    from pol.training import loss_function

    data = pol.load_data("digits-mlp")
    loader = torch.utils.data.DataLoader(data.train, batch_size=32)
    with pytest.warns(UserWarning, match="will not verify"):
        with pol.Recorder(tmp_path / "short.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp",
                          steps=20) as rec:
            model, opt, loader = rec.attach(model=None, optimizer=lambda p: torch.optim.SGD(p, lr=0.05),
                                            data_loader=loader)
            for step, (x, y) in enumerate(loader):
                opt.zero_grad()
                loss_function("cross_entropy")(model(x), y).backward()
                opt.step()
                if step == 4:
                    break
            with pytest.raises(PlanError, match="finished recording"):
                rec.publish(model, tmp_path / "early.safetensors")
    assert not (tmp_path / "early.safetensors").exists()
