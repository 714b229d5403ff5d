"""Core hooks the framework integrations use: the training_step loss, Recorder.configure, external
micro-batch hooks, and optimizer.step(None) as Accelerate calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

import pol
from pol import step as step_spec
from pol.errors import PlanError


def _spec(**changes: Any) -> dict[str, Any]:
    spec = {"loss": {"name": "training_step", "kwargs": {}}, "batch": {"inputs": [], "target": None},
            "output": None, "clip": None, "autocast": None, "accumulation": 2}
    spec.update(changes)
    return spec


def test_training_step_loss_spec() -> None:
    assert step_spec.validate(_spec())["accumulation"] == 2
    for bad in (_spec(batch={"inputs": [0], "target": None}), _spec(batch={"inputs": [], "target": 1}),
                _spec(output="loss")):
        with pytest.raises(PlanError, match="whole batch"):
            step_spec.validate(bad)
    with pytest.raises(PlanError, match="accumulation"):
        step_spec.validate(_spec(accumulation=0))  # the rest is still validated
    with pytest.raises(PlanError, match="non-empty list"):  # an empty input list stays refused for other losses
        step_spec.validate({**_spec(), "loss": {"name": "cross_entropy", "kwargs": {}},
                            "batch": {"inputs": [], "target": 1}})


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return {"loss": F.cross_entropy(self.lin(x), y) * (1 + batch_idx), "extra": 1}


def test_training_step_loss_reads_the_loss_and_passes_batch_idx() -> None:
    step = step_spec.Step.from_spec(_spec())
    m = _Module()
    batch = [torch.randn(4, 3), torch.tensor([0, 1, 1, 0])]
    assert torch.equal(step.loss(m, batch, 2), 3 * step.loss(m, batch, 0))
    with pytest.raises(PlanError, match="index"):
        step.loss(m, batch)
    m.training_step = lambda b, i: None  # type: ignore[method-assign]  # Lightning would skip the step
    with pytest.raises(PlanError, match="skipped step"):
        step.loss(m, batch, 0)


def _recorder(path: Path, key: Path, **kwargs: Any) -> pol.Recorder:
    return pol.Recorder(path, key=key, every=2, seed=1, task="digits-mlp", steps=4, overwrite=True, **kwargs)


def test_configure_sets_options_and_refuses_conflicts(tmp_path: Path, keys: dict) -> None:
    rec = _recorder(tmp_path / "c.pol.h5", keys["key"], clip=1.0, autocast="bfloat16")
    rec.configure(clip={"kind": "norm", "max_norm": 1.0, "norm_type": 2.0},
                  autocast={"device_type": "cpu", "dtype": "bfloat16"}, accumulation=2)  # the same: fine
    with pytest.raises(PlanError, match="clip is set on the Recorder"):
        rec.configure(clip=0.5)
    with pytest.raises(PlanError, match="does not take"):
        rec.configure(momentum=0.9)
    rec.configure(lr_schedule={"kind": "linear", "lr": 0.1, "total_steps": 4, "warmup_steps": 1})
    data = pol.load_data("digits-mlp").train
    with rec:
        model, opt, loader = rec.attach(optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                                        data_loader=torch.utils.data.DataLoader(data, batch_size=16))
        assert rec.plan is not None and rec.plan.accumulation == 2
        assert rec.plan.lr_schedule["kind"] == "linear"
        with pytest.raises(PlanError, match="before attach"):
            rec.configure(accumulation=1)
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            (loss / 2).backward()
            if rec._micro % 2 == 0:
                opt.step(None)  # closure=None passed positionally, as Accelerate's optimizer wrapper does
                opt.zero_grad()
    from verifier import VerifyOptions, verify

    assert verify(rec.path, public_key=str(keys["pub"]), options=VerifyOptions(seed=0)).verdict == "verified"


def test_a_real_closure_is_still_refused(tmp_path: Path, keys: dict) -> None:
    data = pol.load_data("digits-mlp").train
    with pytest.raises(PlanError, match="closure"):
        with _recorder(tmp_path / "x.pol.h5", keys["key"]) as rec:
            model, opt, loader = rec.attach(optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                                            data_loader=torch.utils.data.DataLoader(data, batch_size=16))
            x, y = next(iter(loader))

            def closure() -> Any:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)


def test_external_micro_batch_hook_leaves_forward_alone(tmp_path: Path, keys: dict) -> None:
    """With external_micro_batch_hook the forward pass does not count micro-batches: the integration does."""
    data = pol.load_data("digits-mlp").train
    with pytest.raises(PlanError, match="0 training forward pass"):
        with _recorder(tmp_path / "e.pol.h5", keys["key"]) as rec:
            model, opt, loader = rec.attach(optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                                            data_loader=torch.utils.data.DataLoader(data, batch_size=16),
                                            external_micro_batch_hook=True)
            x, y = next(iter(loader))
            F.cross_entropy(model(x), y).backward()
            opt.step()
