"""Untrusted input in pol/: plans, schedules, builder kwargs, existing outputs, decoding order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_pol

from pol import schedule
from pol.datacommit import data_root
from pol.errors import (
    DataUnavailableError,
    InputError,
    OutputExistsError,
    PlanError,
    ProofFormatError,
    short_reason,
)
from pol.hashing import canonical_json, state_digest
from pol.plan import Plan
from pol.proof_file import ProofReader, ProofWriter
from pol.tasks import build_model, load_data


def _plan_dict(proof: Path) -> dict:
    with ProofReader(proof) as r:
        return json.loads(r.plan_bytes)


def test_stored_plan_bytes_are_canonical_and_round_trip(honest_proof: Path) -> None:
    with ProofReader(honest_proof) as r:
        assert r.plan.to_bytes() == r.plan_bytes
        assert Plan.from_bytes(r.plan_bytes) == r.plan


@pytest.mark.parametrize("edit, match", [
    (lambda p: p["lr_schedule"].pop("lr"), "missing"),
    (lambda p: p["lr_schedule"].__setitem__("lr", "0.1"), "lr must be"),
    (lambda p: p["lr_schedule"].__setitem__("lr", -1.0), "lr must be"),
    (lambda p: p.__setitem__("lr_schedule", {"kind": "cosine", "lr": 0.1, "total_steps": 1.5}), "total_steps"),
    (lambda p: p.__setitem__("lr_schedule", {"kind": "table", "values": [0.1] * 39}), "39 entries"),
    (lambda p: p.__setitem__("extra", []), "extra must be an object"),
    (lambda p: p["extra"].__setitem__("codec", 3), "extra.codec"),
    (lambda p: p["model"].__setitem__("kwargs", None), "model.kwargs"),
    (lambda p: p["model"].pop("spec"), "model lacks 'spec'"),
    (lambda p: p["optimizer"].__setitem__("hparams", []), "optimizer.hparams"),
    (lambda p: p.__setitem__("environment", "cpu"), "environment must be an object"),
    (lambda p: p["data"].__setitem__("num_samples", -1), "num_samples"),
    (lambda p: p.__setitem__("signer", None), "signer"),
])
def test_plan_from_bytes_refuses_ill_formed_fields(honest_proof: Path, edit, match: str) -> None:
    plan = _plan_dict(honest_proof)
    edit(plan)
    with pytest.raises(ProofFormatError, match=match):
        Plan.from_bytes(canonical_json(plan))


def test_plan_from_bytes_refuses_non_canonical_bytes(honest_proof: Path) -> None:
    plan = _plan_dict(honest_proof)
    unsorted = dict(reversed(list(plan.items())))
    for raw in (json.dumps(plan, sort_keys=True).encode(),                           # whitespace
                json.dumps(unsorted, separators=(",", ":")).encode(),                # key order
                canonical_json(plan) + b"\n",                                        # trailing bytes
                canonical_json(plan).replace(b'cross_entropy', b'cross\\u005fentropy'),  # another string spelling
                canonical_json({k: v for k, v in plan.items() if k != "extra"})):    # a defaulted field left out
        with pytest.raises(ProofFormatError, match="canonical"):
            Plan.from_bytes(raw)


def test_schedule_validate_checks_value_types() -> None:
    assert schedule.validate({"kind": "cosine", "lr": 1, "total_steps": 10, "warmup_steps": 2})
    for bad in ([], {"kind": "constant", "lr": True}, {"kind": "constant", "lr": float("inf")},
                {"kind": "step", "lr": 0.1, "milestones": 5, "gamma": 0.1},
                {"kind": "step", "lr": 0.1, "milestones": [5], "gamma": None},
                {"kind": "cosine", "lr": 0.1, "total_steps": 10, "min_lr": "0"},
                {"kind": "table", "values": [0.1, "x"]}):
        with pytest.raises(PlanError):
            schedule.validate(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, match", [([1], "must be an object"), ({"width": 3}, "cannot build the model"),
                                           ({1: 2}, "must be an object")])
def test_model_kwargs_that_do_not_fit_the_builder_are_an_input_error(kwargs, match: str) -> None:
    with pytest.raises(DataUnavailableError, match=match):
        build_model("digits-mlp", kwargs)
    assert build_model("digits-mlp", {"hidden": 8}).fc1.out_features == 8


def test_data_kwargs_that_do_not_fit_the_builder_are_an_input_error() -> None:
    with pytest.raises(DataUnavailableError, match="cannot build the data 'digits-mlp'"):
        load_data("digits-mlp", {"num_samples": 5})
    with pytest.raises(DataUnavailableError, match="must be an object"):
        load_data("synthetic-resnet20", "x")  # type: ignore[arg-type]
    assert len(load_data("synthetic-resnet20", {"num_samples": 8, "heldout": 2}).train) == 8


def test_existing_output_is_an_input_error(honest_proof: Path, tmp_path: Path, keys: dict,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exists.pol.h5"
    out.write_bytes(b"keep me")
    with ProofReader(honest_proof) as r:
        plan = r.plan
    with pytest.raises(OutputExistsError, match="exists") as exc:
        ProofWriter(out, plan=plan, plan_signature=b"\0" * 64, public_key=b"\0" * 32)
    assert isinstance(exc.value, FileExistsError) and isinstance(exc.value, InputError)
    code, _, err = run_pol(["train", "--task", "digits-mlp", "--out", out, "--key", keys["key"], "--steps", "2"],
                                capsys)
    assert code == 2 and err.startswith("pol: error:") and "exists" in err and "internal error" not in err, err
    assert out.read_bytes() == b"keep me"


def test_writer_refuses_an_unknown_mode(honest_proof: Path, tmp_path: Path) -> None:
    with ProofReader(honest_proof) as r:
        plan = r.plan
    with pytest.raises(ValueError, match="mode"):
        ProofWriter(tmp_path / "m.pol.h5", plan=plan, plan_signature=b"\0" * 64, public_key=b"\0" * 32, mode="sparse")


def test_reading_in_order_does_not_walk_back_to_the_keyframe(honest_proof: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with ProofReader(honest_proof) as r:
        expected = {i: state_digest(r.checkpoint_state(i)) for i in r.stored_checkpoints}
    calls: list[int] = []
    original = ProofReader._decode_one

    def counting(self: ProofReader, i: int, previous):
        calls.append(i)
        return original(self, i, previous)

    monkeypatch.setattr(ProofReader, "_decode_one", counting)
    lookups: list[int] = []
    starts = ProofReader._starts_decoding
    monkeypatch.setattr(ProofReader, "_starts_decoding", staticmethod(lambda g: lookups.append(1) or starts(g)))
    with ProofReader(honest_proof) as r:
        assert r.num_checkpoints == 5 and not r._starts_decoding(r._group(4))  # one keyframe, then deltas
        lookups.clear()
        for i in r.stored_checkpoints:
            assert state_digest(r.checkpoint_state(i)) == expected[i]
        assert calls == r.stored_checkpoints      # one decode per checkpoint
        assert len(lookups) == 1                  # only checkpoint 0 is looked at for a keyframe
        calls.clear()
        assert state_digest(r.checkpoint_state(2)) == expected[2]  # backwards: from the keyframe again
        assert calls == [0, 1, 2]


def test_data_root_hashes_little_endian_bytes() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.arange(3, dtype=np.int64)
    native = data_root(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)))
    assert data_root([(x[i], y[i]) for i in range(3)]) == native
    assert data_root([(x[i].astype(">f4"), y[i].astype(">i8")) for i in range(3)]) == native


def test_short_reason_is_one_line() -> None:
    assert short_reason(ValueError("first\nsecond")) == "first"
    assert short_reason(KeyError()) == "KeyError"
    assert len(short_reason(OSError("x" * 500))) == 200
