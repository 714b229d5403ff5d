"""The training recipes people run record proofs that verify, and loops that do something the plan
does not say are stopped (issue 14). Every recipe here is recorded around a hand-written loop with
the public Recorder API and verified bitwise with the public verifier API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

import pol
from pol.errors import DataUnavailableError, PlanError
from verifier import VerifyOptions, verify

STEPS, EVERY = 8, 4


def record(path: Path, key: Path, *, optimizer: Callable[[Any], Any], data_spec: str = "digits-mlp",
           model_spec: str = "digits-mlp", batch_size: int = 32, step: Callable[..., Any] | None = None,
           **recorder_kwargs: Any) -> Path:
    """Record STEPS steps with the user's own loop body ``step(model, batch, rec)`` (default: cross-entropy)."""
    data = pol.load_data(data_spec)
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch_size)
    with pol.Recorder(path, key=key, every=EVERY, seed=3, model_spec=model_spec, data_spec=data_spec,
                      steps=STEPS, overwrite=True, **recorder_kwargs) as rec:
        model, opt, loader = rec.attach(optimizer=optimizer, data_loader=loader)
        body = step or _plain
        while rec.step < STEPS:
            for batch in loader:
                body(model, opt, batch, rec)
    return path


def _plain(model: Any, opt: Any, batch: Any, rec: Any) -> None:
    x, y = batch
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def verified(path: Path, pub: Path, **options: Any) -> bool:
    report = verify(path, public_key=str(pub), options=VerifyOptions(seed=0, **options))
    assert report.verdict == "verified", report.to_json()
    assert report.info["mode"] == "exact"
    return True


OPTIMIZERS: dict[str, Callable[[Any], Any]] = {
    "SGD": lambda p: torch.optim.SGD(p, lr=0.05),
    "SGD-momentum-nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "SGD-foreach": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=True),
    "Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "Adam-amsgrad-foreach": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True, foreach=True),
    "Adam-fused": lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=1e-3),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
    "Adadelta": lambda p: torch.optim.Adadelta(p),
    "Adamax": lambda p: torch.optim.Adamax(p, lr=1e-3),
    "NAdam": lambda p: torch.optim.NAdam(p, lr=1e-3),
    "RAdam": lambda p: torch.optim.RAdam(p, lr=1e-3, decoupled_weight_decay=True, weight_decay=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_accepted_optimizer_records_and_verifies(name: str, tmp_path: Path, keys: dict) -> None:
    path = record(tmp_path / "o.pol.h5", keys["key"], optimizer=OPTIMIZERS[name])
    assert verified(path, keys["pub"], segments=2)


def test_optimizer_outside_the_allow_list_is_refused_before_step_one(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="not supported"):
        record(tmp_path / "o.pol.h5", keys["key"], optimizer=lambda p: torch.optim.LBFGS(p))


def test_decay_and_no_decay_parameter_groups(tmp_path: Path, keys: dict) -> None:
    def groups(model: Any) -> Any:
        named = list(model.named_parameters())
        decay = [p for n, p in named if n.endswith("weight")]
        no_decay = [p for n, p in named if not n.endswith("weight")]
        return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                  {"params": no_decay, "weight_decay": 0.0, "lr": 2e-3}], lr=1e-3)

    path = tmp_path / "g.pol.h5"
    data = pol.load_data("digits-mlp")
    with pol.Recorder(path, key=keys["key"], every=EVERY, seed=3, task="digits-mlp", steps=STEPS) as rec:
        model = rec.initial_model()
        m, opt, loader = rec.attach(model=model, optimizer=groups(model),
                                    data_loader=torch.utils.data.DataLoader(data.train, batch_size=32))
        for batch in loader:
            _plain(m, opt, batch, rec)
            if rec.step == STEPS:
                break
        assert [g["lr_scale"] for g in rec.plan.optimizer["groups"]] == [1.0, 2.0]
    assert verified(path, keys["pub"], segments=2)


@pytest.mark.parametrize("schedule", [
    {"kind": "linear", "lr": 1e-3, "total_steps": STEPS, "warmup_steps": 2},
    {"kind": "cosine", "lr": 1e-3, "total_steps": STEPS, "warmup_steps": 2, "min_lr": 1e-5},
    {"kind": "polynomial", "lr": 1e-3, "total_steps": STEPS, "warmup_steps": 1, "power": 2.0},
    {"kind": "one_cycle", "max_lr": 1e-2, "total_steps": STEPS},
    {"kind": "exponential", "lr": 1e-3, "gamma": 0.9},
    {"kind": "step", "lr": 1e-3, "milestones": [3, 6], "gamma": 0.5},
])
def test_schedule_kinds(schedule: dict, tmp_path: Path, keys: dict) -> None:
    path = record(tmp_path / "s.pol.h5", keys["key"], optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                  lr_schedule=schedule)
    assert verified(path, keys["pub"], segments=2)


def test_unknown_schedule_keys_are_refused(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="does not take \\['eta_min'\\]"):
        record(tmp_path / "s.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
               lr_schedule={"kind": "cosine", "lr": 0.1, "total_steps": STEPS, "eta_min": 0.0})


def test_gradient_clipping_is_committed_and_applied_by_the_recorder(tmp_path: Path, keys: dict) -> None:
    path = record(tmp_path / "c.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.5), clip=0.05)
    assert verified(path, keys["pub"], segments=2)


def test_clipping_in_the_loop_without_committing_it_is_refused_at_step_one(tmp_path: Path, keys: dict) -> None:
    def clipping(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        x, y = batch
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        opt.step()

    with pytest.raises(PlanError, match="clip") as exc:
        record(tmp_path / "c.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.5), step=clipping)
    assert "optimizer.step()" in str(exc.value)


def test_value_clipping(tmp_path: Path, keys: dict) -> None:
    path = record(tmp_path / "v.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                  clip={"kind": "value", "clip_value": 0.01})
    assert verified(path, keys["pub"], segments=2)


def _autocast_step(model: Any, opt: Any, batch: Any, rec: Any) -> None:
    x, y = batch
    opt.zero_grad()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def test_bf16_autocast(tmp_path: Path, keys: dict) -> None:
    path = record(tmp_path / "a.pol.h5", keys["key"], optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                  autocast="bfloat16", step=_autocast_step)
    assert verified(path, keys["pub"], segments=2)


def test_autocast_not_committed_is_refused(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="autocast"):
        record(tmp_path / "a.pol.h5", keys["key"], optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
               step=_autocast_step)


def test_label_smoothing(tmp_path: Path, keys: dict) -> None:
    def smoothed(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        x, y = batch
        opt.zero_grad()
        F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
        opt.step()

    path = record(tmp_path / "l.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                  loss_kwargs={"label_smoothing": 0.1}, step=smoothed)
    assert verified(path, keys["pub"], segments=2)
    # the same loop, label smoothing not committed: the recorder's own replay of segment 0 stops it
    with pytest.raises(PlanError, match="does not reproduce.*loss kwargs"):
        record(tmp_path / "l2.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1), step=smoothed)


def test_gradient_accumulation(tmp_path: Path, keys: dict) -> None:
    def accumulate(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        x, y = batch
        (F.cross_entropy(model(x), y) / 2).backward()
        if rec._micro % 2 == 0:
            opt.step()
            opt.zero_grad()

    path = record(tmp_path / "acc.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                  batch_size=16, accumulation=2, step=accumulate)
    assert verified(path, keys["pub"], segments=2)


def test_dict_output_selected(tmp_path: Path, keys: dict) -> None:
    def dict_step(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        x, y = batch
        opt.zero_grad()
        F.cross_entropy(model(x)["logits"], y).backward()
        opt.step()

    path = record(tmp_path / "d.pol.h5", keys["key"], model_spec="recipes:dict_mlp",
                  optimizer=lambda p: torch.optim.SGD(p, lr=0.1), output="logits", step=dict_step)
    assert verified(path, keys["pub"], segments=2, model="recipes:dict_mlp")


def test_dict_batches_with_masks_and_a_model_computed_loss(tmp_path: Path, keys: dict) -> None:
    def hf_style(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        opt.zero_grad()
        model(**batch)["loss"].backward()
        opt.step()

    path = record(tmp_path / "hf.pol.h5", keys["key"], model_spec="recipes:token_classifier",
                  data_spec="recipes:dict_tokens", optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2),
                  loss="model_output", inputs=["input_ids", "attention_mask", "labels"], target=None, output="loss",
                  step=hf_style)
    with pol.ProofReader(path) as r:
        assert r.plan.data["fields"] == ["attention_mask", "input_ids", "labels"]
    assert verified(path, keys["pub"], segments=2, model="recipes:token_classifier", data="recipes:dict_tokens")


def test_tuple_batches_and_a_small_transformer(tmp_path: Path, keys: dict) -> None:
    def tokens_step(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        tokens, mask, y = batch
        opt.zero_grad()
        F.cross_entropy(model(tokens, mask), y).backward()
        opt.step()

    path = record(tmp_path / "t.pol.h5", keys["key"], model_spec="recipes:tiny_transformer",
                  data_spec="recipes:tuple_tokens", optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                  inputs=[0, 1], target=2, clip=1.0, step=tokens_step)
    assert verified(path, keys["pub"], segments=2, model="recipes:tiny_transformer", data="recipes:tuple_tokens")


def test_custom_loss_named_by_the_user_on_both_sides(tmp_path: Path, keys: dict) -> None:
    from recipes import focal_loss

    def focal(model: Any, opt: Any, batch: Any, rec: Any) -> None:
        x, y = batch
        opt.zero_grad()
        focal_loss(model(x), y).backward()
        opt.step()

    path = record(tmp_path / "f.pol.h5", keys["key"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                  loss="recipes:focal_loss", step=focal)
    assert verified(path, keys["pub"], segments=2, loss="recipes:focal_loss")
    with pytest.raises(DataUnavailableError, match="--loss"):
        verify(path, public_key=str(keys["pub"]), options=VerifyOptions(seed=0))


def test_loader_data_must_be_the_committed_data(tmp_path: Path, keys: dict) -> None:
    other = pol.load_data("digits-cnn").train  # the same digits, another shape: not what "digits-mlp" gives
    with pol.Recorder(tmp_path / "x.pol.h5", key=keys["key"], every=EVERY, seed=3, task="digits-mlp", steps=STEPS) as rec:
        with pytest.raises(PlanError, match="not the data 'digits-mlp' gives"):
            rec.attach(optimizer=OPTIMIZERS["SGD"], data_loader=torch.utils.data.DataLoader(other, batch_size=32))
