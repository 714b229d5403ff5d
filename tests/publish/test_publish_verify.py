"""``pol verify WEIGHTS --proof P --key K``: weights equal the proof's final checkpoint, then the proof holds."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from cli_runner import error_document, failed_checks, run_json, run_pol
from publish_helpers import record_run
from safetensors.torch import load_file, save_file

from pol.keys import fingerprint, load_verify_key

FAST = ["--segments", "1", "--seed", "0"]


def verify_weights(weights: Path, proof: Path, key: Path | str | None, capsys: pytest.CaptureFixture[str],
                   *extra: str) -> tuple[int, dict]:
    key_args = ["--key", key] if key is not None else []
    return run_json(["verify", weights, "--proof", proof, *key_args, *FAST, *extra], capsys)


def test_exported_weights_verify(exported: Path, honest_proof: Path, keys: dict,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = verify_weights(exported, honest_proof, keys["pub"], capsys)
    assert code == 0 and doc["verdict"] == "verified", doc
    names = [c["name"] for c in doc["checks"]]
    assert names[0] == "weights_match" and {"replay", "chain", "signer", "initialization"} <= set(names)
    assert all(c["passed"] is True for c in doc["checks"])
    assert doc["weights_names"]["file_tensors"] == doc["weights_names"]["proof_tensors"] == 4
    assert doc["weights_digest"] == doc["proof_final_weights_digest"]
    assert doc["schema_version"] == 1 and doc["cast_rule"] is None


def test_key_may_be_a_fingerprint(exported: Path, honest_proof: Path, keys: dict,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fpr = fingerprint(load_verify_key(keys["pub"]))
    code, doc = verify_weights(exported, honest_proof, fpr, capsys)
    assert code == 0 and doc["verdict"] == "verified"
    other = fingerprint(load_verify_key(keys["other_pub"]))
    code, doc = verify_weights(exported, honest_proof, other, capsys)
    assert code == 1 and failed_checks(doc) == {"signer"}


def test_without_key_is_only_self_asserted(exported: Path, honest_proof: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = verify_weights(exported, honest_proof, None, capsys)
    assert code == 1 and doc["verdict"] == "self-asserted"
    assert doc["signer_trust"] == "self-asserted"


def test_one_edited_value_is_rejected(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    tensors = load_file(str(exported))
    tensors["fc2.weight"][1, 2] += 1e-4
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited))
    code, doc = verify_weights(edited, honest_proof, keys["pub"], capsys)
    assert code == 1 and doc["verdict"] == "rejected"
    assert failed_checks(doc) == {"weights_match"}
    match = doc["checks"][0]
    assert "fc2.weight" in match["detail"] and "1 of" in match["detail"]
    assert match["figure"].startswith("3/4")


def test_weights_of_another_run_are_rejected(tmp_path: Path, honest_proof: Path, keys: dict,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.safetensors"
    record_run(tmp_path / "other.pol.h5", keys["key"], seed=3, publish_to=other)
    code, doc = verify_weights(other, honest_proof, keys["pub"], capsys)
    assert code == 1 and failed_checks(doc) == {"weights_match"}
    assert doc["checks"][0]["figure"] == "0/4 tensors equal"


def test_missing_and_extra_tensors_are_rejected(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tensors = load_file(str(exported))
    del tensors["fc1.bias"]
    tensors["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path))
    code, doc = verify_weights(path, honest_proof, keys["pub"], capsys)
    assert code == 1 and failed_checks(doc) == {"weights_match"}
    assert doc["weights_names"]["missing_from_file"] == ["fc1.bias"]
    assert doc["weights_names"]["not_in_proof"] == ["extra.weight"]


def _cast_file(exported: Path, tmp_path: Path, dtype: torch.dtype, edit: bool = False) -> Path:
    tensors = {k: v.to(dtype) for k, v in load_file(str(exported)).items()}
    if edit:
        t = tensors["fc1.weight"].view(torch.int16)
        t[0, 0] ^= 1   # flip the lowest mantissa bit
    path = tmp_path / f"cast-{str(dtype)[6:]}{'-edited' if edit else ''}.safetensors"
    save_file(tensors, str(path))
    return path


def test_bf16_copy_needs_an_explicit_cast_rule(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bf16 = _cast_file(exported, tmp_path, torch.bfloat16)
    code, doc = verify_weights(bf16, honest_proof, keys["pub"], capsys)
    assert code == 1 and failed_checks(doc) == {"weights_match"}
    assert "--allow-cast bf16" in doc["checks"][0]["detail"]
    code, doc = verify_weights(bf16, honest_proof, keys["pub"], capsys, "--allow-cast", "bf16")
    assert code == 0 and doc["verdict"] == "verified", doc
    assert "bfloat16" in doc["cast_rule"] and "round-to-nearest-even" in doc["cast_rule"]
    assert "bfloat16 cast rule" in doc["checks"][0]["figure"]
    code, doc = verify_weights(bf16, honest_proof, keys["pub"], capsys, "--allow-cast", "fp16")
    assert code == 1 and failed_checks(doc) == {"weights_match"}
    edited = _cast_file(exported, tmp_path, torch.bfloat16, edit=True)
    code, doc = verify_weights(edited, honest_proof, keys["pub"], capsys, "--allow-cast", "bf16")
    assert code == 1 and "fc1.weight" in doc["checks"][0]["detail"]


def test_fp16_copy_with_cast_rule(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fp16 = tmp_path / "fp16.safetensors"
    assert run_pol(["export", honest_proof, "--out", fp16, "--cast", "fp16"], capsys)[0] == 0
    assert all(t.dtype == torch.float16 for t in load_file(str(fp16)).values())
    code, doc = verify_weights(fp16, honest_proof, keys["pub"], capsys, "--allow-cast", "fp16")
    assert code == 0 and "float16" in doc["cast_rule"]
    assert verify_weights(fp16, honest_proof, keys["pub"], capsys)[0] == 1


def test_wrapper_prefixes_are_resolved_and_reported(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tensors = load_file(str(exported))
    path = tmp_path / "compiled-dp.safetensors"
    save_file({f"_orig_mod.module.{k}": v for k, v in tensors.items()}, str(path))
    code, doc = verify_weights(path, honest_proof, keys["pub"], capsys)
    assert code == 0, doc
    assert doc["weights_names"]["prefix_stripped_from_file"] == ["_orig_mod.", "module."]
    assert "prefix" in doc["checks"][0]["figure"] and "module." in doc["checks"][0]["detail"]


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory: pytest.TempPathFactory, keys: dict) -> tuple[Path, Path, dict]:
    d = tmp_path_factory.mktemp("tied")
    published = d / "tied.safetensors"
    proof = record_run(d / "tied.pol.h5", keys["key"], model_spec="pub_models:tied_mlp", publish_to=published)
    import pol
    from pol.publish import final_weights

    with pol.ProofReader(proof) as r:
        state = final_weights(r)
    return proof, published, state


def test_tied_weights_published_once_and_reported(tied_run: tuple, keys: dict,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    proof, published, state = tied_run
    assert {"fc1.weight", "fc2.weight"} <= set(state)      # the state_dict carries both names
    stored = load_file(str(published))
    assert "fc2.weight" not in stored and "fc1.weight" in stored
    code, doc = verify_weights(published, proof, keys["pub"], capsys, "--model", "pub_models:tied_mlp")
    assert code == 0, doc
    assert doc["weights_names"]["tied"] == {"fc2.weight": "fc1.weight"}
    assert doc["weights_names"]["ties_in_file"] == {"fc2.weight": "fc1.weight"}
    assert "tied" in doc["checks"][0]["figure"] and "fc2.weight = fc1.weight" in doc["checks"][0]["detail"]


def test_tied_weights_in_a_pickle_state_dict(tied_run: tuple, keys: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    proof, _, state = tied_run
    import pub_models

    model = pub_models.tied_mlp()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    pt = tmp_path / "tied.pt"
    torch.save(model.state_dict(), pt)             # both names, one storage
    code, doc = verify_weights(pt, proof, keys["pub"], capsys, "--model", "pub_models:tied_mlp", "--allow-pickle")
    assert code == 0, doc
    assert doc["weights_format"] == "pickle"
    assert doc["weights_names"]["ties_in_file"] == {"fc2.weight": "fc1.weight"}


def test_pickle_refused_without_allow_pickle(exported: Path, honest_proof: Path, keys: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for suffix in (".pt", ".pth", ".bin"):
        path = tmp_path / f"model{suffix}"
        torch.save(load_file(str(exported)), path)
        code, out, err = run_pol(["verify", path, "--proof", honest_proof, "--key", keys["pub"], "--json"], capsys)
        assert code == 2 and error_document(out)["exit_code"] == 2
        assert "--allow-pickle" in err and len(err.strip().splitlines()) == 1
    code, doc = verify_weights(path, honest_proof, keys["pub"], capsys, "--allow-pickle")
    assert code == 0 and doc["weights_format"] == "pickle"


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - executes os.system on a plain pickle.load
        return (os.system, (f"touch {_Payload.marker}",))


def test_malicious_pickle_is_not_executed(honest_proof: Path, keys: dict, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"fc1.weight": _Payload()}, protocol=2))
    code, out, err = run_pol(["verify", path, "--proof", honest_proof, "--key", keys["pub"], "--allow-pickle"], capsys)
    assert code == 2 and "weights_only" in err
    assert not (tmp_path / "pwned").exists()


def test_weights_file_needs_a_proof(exported: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pol(["verify", exported, "--key", keys["pub"]], capsys)
    assert code == 2 and "--proof" in err


def _raw_safetensors(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


MALFORMED = {
    "empty": b"",
    "short": b"\x01\x02\x03",
    "huge-header-length": _raw_safetensors({}, length=1 << 62),
    "header-past-end": _raw_safetensors({}, length=10_000),
    "header-not-json": _raw_safetensors(b"{not json"),
    "header-not-utf8": _raw_safetensors(b"\xff\xfe\xfd"),
    "header-is-a-list": _raw_safetensors([1, 2, 3]),
    "unknown-dtype": _raw_safetensors({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "negative-shape": _raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "offsets-past-end": _raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 4),
    "size-mismatch": _raw_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
    "overlap": _raw_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    "hole": _raw_safetensors({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
    "bad-metadata": _raw_safetensors({"__metadata__": {"a": 1}}),
    "bad-tied-metadata": _raw_safetensors({"__metadata__": {"pol.tied": "[1"}}),
    "text-file": b"these are not weights\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_weights_exit_2(name: str, honest_proof: Path, keys: dict, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(MALFORMED[name])
    code, out, err = run_pol(["verify", path, "--proof", honest_proof, "--key", keys["pub"], "--json"], capsys)
    assert code == 2 and error_document(out)["exit_code"] == 2
    assert err.startswith("pol: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = run_pol(["digest", path], capsys)
    assert code == 2 and err.startswith("pol: error:")


def test_missing_weights_file_exit_2(honest_proof: Path, keys: dict, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_pol(["verify", tmp_path / "nope.safetensors", "--proof", honest_proof, "--key", keys["pub"]],
                           capsys)
    assert code == 2 and "not found" in err
