"""The state-dict API (commit_weights / verify_weights_binding) and the verifier's pinned policy."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import failed_checks, run_json, run_pol
from helpers_train import train_recorded
from zk_testutil import SMALL

from zk import Context, Params, ProofRejected, ZkPolicy, commit_weights, verify_weights_binding
from zk.generators import GeneratorSet

CTX = Context(b"\x21" * 32, 5, b"\x22" * 32)


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"layer.weight": rng.normal(0, 0.2, (12, 9)).astype(np.float32),
            "layer.bias": rng.normal(0, 0.2, 12).astype(np.float32),
            "steps": np.array(3, dtype=np.int64)}  # not a float tensor: not committed


@pytest.fixture(scope="module")
def committed(tensors: dict[str, np.ndarray], zk_cache: Path) -> tuple[Any, list[int]]:
    return commit_weights(tensors, CTX, params=Params(chunk_size=SMALL), cache_dir=zk_cache)


def test_state_dict_commitment_binds_the_float_tensors(tensors, committed, zk_cache: Path) -> None:
    wc, blindings = committed
    assert wc.layout.names == ("layer.bias", "layer.weight") and wc.commitment.length == 120
    assert len(blindings) == len(wc.commitment.chunks) == 2 and wc.clipped == 0
    policy = ZkPolicy(max_chunk_size=SMALL)
    assert verify_weights_binding(tensors, wc, CTX, policy=policy, cache_dir=zk_cache) == 0
    changed = dict(tensors, **{"layer.bias": tensors["layer.bias"] + np.float32(1 / 1024)})
    with pytest.raises(ProofRejected, match="does not open"):
        verify_weights_binding(changed, wc, CTX, policy=policy, cache_dir=zk_cache)
    with pytest.raises(ProofRejected, match="tensors"):
        verify_weights_binding({"layer.weight": tensors["layer.weight"]}, wc, CTX, policy=policy, cache_dir=zk_cache)
    with pytest.raises(ProofRejected):
        verify_weights_binding(tensors, wc, dataclasses.replace(CTX, checkpoint=6), policy=policy,
                               cache_dir=zk_cache)


def test_a_change_below_the_quantisation_step_is_not_seen(tensors, committed, zk_cache: Path) -> None:
    # What the commitment binds is q(w) at 2^-12: a change that rounds away is, by design, the same opening.
    wc, _ = committed
    tiny = dict(tensors, **{"layer.bias": tensors["layer.bias"] + np.float32(1e-6)})
    assert verify_weights_binding(tiny, wc, CTX, policy=ZkPolicy(max_chunk_size=SMALL), cache_dir=zk_cache) == 0


def test_policy_refuses_parameters_before_deriving_generators(tensors, committed, monkeypatch) -> None:
    wc, _ = committed

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("generators derived before the parameters were accepted")

    monkeypatch.setattr(GeneratorSet, "load", classmethod(refuse))
    for policy in (ZkPolicy(max_chunk_size=SMALL // 2), ZkPolicy(max_chunk_size=SMALL, scale_bits=10), ZkPolicy(max_chunk_size=SMALL, bits=8),
                   ZkPolicy(max_chunk_size=SMALL, dst=b"OTHER-DST")):
        with pytest.raises(ProofRejected, match="parameters not accepted"):
            verify_weights_binding(tensors, wc, CTX, policy=policy)


def test_policy_validates_itself() -> None:
    with pytest.raises(ValueError):
        ZkPolicy(bits=1)
    with pytest.raises(ValueError):
        ZkPolicy(max_commitments=0)
    assert ZkPolicy().problems(Params()) == []
    assert len(ZkPolicy().problems(Params(chunk_size=8192, scale_bits=0, bits=2, dst=b"X"))) == 4


# --------------------------------------------------------------------------- on a proof file


CHUNK = 256


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    d = tmp_path_factory.mktemp("zk-policy")
    path = train_recorded(d / "run.pol.h5", keys["key"], steps=16, every=4, seed=3)
    from pol.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["zk", "commit", str(path), "--key", str(keys["key"]), "--chunk-size", str(CHUNK)])
    assert exc.value.code in (0, None)
    return path


def test_max_commitments_refuses_before_decoding(proof: Path, keys: dict[str, Path]) -> None:
    from pol.keys import load_verify_key
    from zk.verify import verify_zk_section

    result = verify_zk_section(str(proof), load_verify_key(keys["pub"]), policy=ZkPolicy(max_commitments=3))
    assert result.verdict == "rejected" and [c["name"] for c in result.failed] == ["zk.points"]
    assert "max_commitments" in result.check("zk.points")["detail"]
    assert "zk.binding" not in {c["name"] for c in result.checks}


def _forge_checkpoint(path: Path, key: Path, target: int) -> None:
    """Re-sign the section with checkpoint ``target`` committed to zeros (the others honest)."""
    from pol.keys import load_signing_key
    from pol.proof_file import ProofReader
    from zk.link import build_section, write_section

    class Forged:
        def __init__(self, real: Any) -> None:
            self._real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

        def checkpoint_state(self, i: int) -> dict[str, np.ndarray]:
            state = self._real.checkpoint_state(i)
            return {k: (np.zeros_like(v) if i == target else v) for k, v in state.items() if k.startswith("model/")}

    with ProofReader(path) as r:
        section, _ = build_section(Forged(r), load_signing_key(key), params=Params(chunk_size=CHUNK))
    write_section(path, section, overwrite=True)


def test_sampled_binding_states_its_probability_and_always_checks_the_target(
    proof: Path, keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.pol.h5"
    shutil.copy(proof, copy)
    code, doc = run_json(["zk", "verify", copy, "--key", keys["pub"], "--sample", "2", "--seed", "1"], capsys)
    binding = [c for c in doc["checks"] if c["name"] == "zk.binding"][0]
    assert code == 0 and binding["figure"].startswith("2/2 checkpoints (verifier-random sample of 5")
    _forge_checkpoint(copy, keys["key"], target=2)
    caught = set()
    for seed in range(8):  # some samples of one checkpoint miss the forged one; the figure says how likely
        code, doc = run_json(["zk", "verify", copy, "--key", keys["pub"], "--sample", "1", "--seed", str(seed)],
                             capsys)
        caught.add(code)
    assert caught == {0, 1}
    # a checkpoint the verifier asks about (here through openings) is always among those checked
    secrets = tmp_path / "s.h5"
    code, _, err = run_pol(["zk", "commit", copy, "--key", keys["key"], "--chunk-size", CHUNK, "--force",
                            "--secrets-out", secrets], capsys)
    assert code == 0, err
    _forge_checkpoint(copy, keys["key"], target=2)
    opening = tmp_path / "open.json"
    doc_json = {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00" * 32, "checkpoint": 2, "chunks": []}
    opening.write_text(json.dumps(doc_json))
    for seed in range(4):
        code, doc = run_json(["zk", "verify", copy, "--key", keys["pub"], "--sample", "1", "--seed", str(seed),
                              "--opening", opening], capsys)
        assert code == 1 and "zk.binding" in failed_checks(doc)


def test_duplicate_chunk_openings_are_refused(proof: Path, keys: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.pol.h5"
    shutil.copy(proof, copy)
    secrets = tmp_path / "s.h5"
    code, _, err = run_pol(["zk", "commit", copy, "--key", keys["key"], "--chunk-size", CHUNK, "--force",
                            "--secrets-out", secrets], capsys)
    assert code == 0, err
    op = tmp_path / "open.json"
    code, _, err = run_pol(["zk", "open", copy, "--secrets", secrets, "--checkpoint", 1, "--chunk", 0, "--out", op],
                           capsys)
    assert code == 0, err
    doc = json.loads(op.read_text())
    doc["chunks"] = doc["chunks"] * 3
    op.write_text(json.dumps(doc))
    code, out = run_json(["zk", "verify", copy, "--key", keys["pub"], "--opening", op], capsys)
    assert code == 1 and failed_checks(out) == {"zk.openings"}
