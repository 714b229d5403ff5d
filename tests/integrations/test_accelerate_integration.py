"""A plain loop prepared by Accelerate records proofs that verify; the accelerator's settings are
committed, its clipping calls are checked against the committed clip, and fp16 is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

accelerate = pytest.importorskip("accelerate")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import pol  # noqa: E402
from pol.errors import PlanError  # noqa: E402
from pol.integrations.accelerate import prepare  # noqa: E402
from verifier import VerifyOptions, verify  # noqa: E402

STEPS, EVERY = 6, 3


def _accelerator(**kwargs: Any) -> Any:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # one process may build accelerators with different settings
    return accelerate.Accelerator(cpu=True, **kwargs)


def run(path: Path, key: Path, accelerator: Any, clip_in_loop: float | None = 0.05, **recorder: Any) -> Path:
    data = pol.load_data("recipes:tuple_tokens").train
    with pol.Recorder(path, key=key, every=EVERY, seed=4, steps=STEPS, overwrite=True, inputs=[0, 1], target=2,
                      model_spec="recipes:tiny_transformer", data_spec="recipes:tuple_tokens", **recorder) as rec:
        model, opt, loader = prepare(rec, accelerator, model=rec.initial_model(),
                                     optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                                     data_loader=torch.utils.data.DataLoader(data, batch_size=8))
        while rec.step < STEPS:
            for tokens, mask, y in loader:
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        loss = F.cross_entropy(model(tokens, mask), y)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and clip_in_loop is not None:
                        norm = accelerator.clip_grad_norm_(model.parameters(), clip_in_loop)
                        assert torch.isfinite(norm)
                    opt.step()
                    opt.zero_grad()
    return path


def test_bf16_accumulation_and_clipping(tmp_path: Path, keys: dict) -> None:
    path = run(tmp_path / "acc.pol.h5", keys["key"], _accelerator(mixed_precision="bf16", gradient_accumulation_steps=2),
               clip=0.05)
    with pol.ProofReader(path) as r:
        assert r.plan.step["autocast"] == {"device_type": "cpu", "dtype": "bfloat16"}
        assert r.plan.step["accumulation"] == 2 and r.plan.step["clip"]["max_norm"] == 0.05
    report = verify(path, public_key=str(keys["pub"]), options=VerifyOptions(
        seed=0, segments=2, model="recipes:tiny_transformer", data="recipes:tuple_tokens"))
    assert report.verdict == "verified", report.to_json()


def test_clipping_other_than_committed_is_refused_at_step_one(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="clips gradients to norm 0.05 but the plan commits clip=None"):
        run(tmp_path / "c.pol.h5", keys["key"], _accelerator())


def test_fp16_is_refused_before_the_plan_is_signed(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="GradScaler"):
        run(tmp_path / "h.pol.h5", keys["key"], _accelerator(mixed_precision="fp16"))
    assert not (tmp_path / "h.pol.h5").exists()


def test_autocast_only_inside_forward_is_refused(tmp_path: Path, keys: dict) -> None:
    """Accelerate's own forward wrapper is removed: a loop without accelerator.autocast() runs no autocast,
    which the plan (bf16 committed) does not say, and the recorder stops it at the first forward."""
    accelerator = _accelerator(mixed_precision="bf16")
    data = pol.load_data("recipes:tuple_tokens").train
    with pytest.raises(PlanError, match="no autocast"):
        with pol.Recorder(tmp_path / "f.pol.h5", key=keys["key"], every=EVERY, seed=4, steps=STEPS, inputs=[0, 1],
                          target=2, model_spec="recipes:tiny_transformer", data_spec="recipes:tuple_tokens") as rec:
            model, opt, loader = prepare(rec, accelerator, model=rec.initial_model(),
                                         optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                                         data_loader=torch.utils.data.DataLoader(data, batch_size=8))
            tokens, mask, y = next(iter(loader))
            F.cross_entropy(model(tokens, mask), y)
