"""The Lightning callback records proofs that verify, and refuses before step 0 what it cannot record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

L = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402

import pol  # noqa: E402
from pol.errors import PlanError  # noqa: E402
from pol.integrations.lightning import ProofCallback, check_trainer  # noqa: E402
from verifier import VerifyOptions, verify  # noqa: E402

STEPS, EVERY = 6, 3


def _trainer(proof: ProofCallback | None, **kwargs: Any) -> Any:
    settings = dict(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    settings.update(kwargs)
    return L.Trainer(callbacks=[proof] if proof else [], **settings)


def fit(path: Path, key: Path, model_spec: str = "lit_models:digits_module", batch_size: int = 16,
        data_spec: str = "digits-mlp", recorder: dict | None = None, **trainer_kwargs: Any) -> Path:
    data = pol.load_data(data_spec).train
    with pol.Recorder(path, key=key, every=EVERY, seed=5, model_spec=model_spec, data_spec=data_spec,
                      steps=STEPS, overwrite=True, **(recorder or {})) as rec:
        proof = ProofCallback(rec)
        trainer = _trainer(proof, **trainer_kwargs)
        trainer.fit(rec.initial_model(), train_dataloaders=proof.dataloader(
            torch.utils.data.DataLoader(data, batch_size=batch_size)))
        assert trainer.global_step == STEPS and rec.step == STEPS
        assert trainer.gradient_clip_val == trainer_kwargs.get("gradient_clip_val")  # restored after fit
    return path


def verified(path: Path, pub: Path, model: str = "lit_models:digits_module", data: str | None = None) -> bool:
    report = verify(path, public_key=str(pub), options=VerifyOptions(seed=0, segments=2, model=model, data=data))
    assert report.verdict == "verified", report.to_json()
    assert report.info["mode"] == "exact"
    return True


def test_bf16_clipping_accumulation_and_parameter_groups(tmp_path: Path, keys: dict, capsys: Any) -> None:
    path = fit(tmp_path / "lit.pol.h5", keys["key"], precision="bf16-mixed", gradient_clip_val=0.05,
               accumulate_grad_batches=2)
    with pol.ProofReader(path) as r:
        step = r.plan.step
        assert step["loss"] == {"name": "training_step", "kwargs": {}}
        assert step["clip"] == {"kind": "norm", "max_norm": 0.05, "norm_type": 2.0}
        assert step["autocast"] == {"device_type": "cpu", "dtype": "bfloat16"}
        assert step["accumulation"] == 2 and r.plan.batch_size == 16
        assert [g["hparams"] for g in r.plan.optimizer["groups"]] == [{}, {"weight_decay": 0.0}]
    from cli_runner import run_json

    capsys.readouterr()
    code, doc = run_json(["verify", path, "--key", keys["pub"], "--model", "lit_models:digits_module",
                          "--segments", "2", "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified", doc


def test_value_clipping_dict_output_and_batch_idx_across_epochs(tmp_path: Path, keys: dict) -> None:
    """training_step returns a dict, bypasses forward and uses batch_idx; 64 samples in micro-batches of 16,
    2 per step: 6 steps cross 2 epoch boundaries, and replay passes Lightning's index (reset every epoch)."""
    path = fit(tmp_path / "d.pol.h5", keys["key"], model_spec="lit_models:dict_step_module",
               data_spec="lit_models:few_digits", gradient_clip_val=0.01, gradient_clip_algorithm="value",
               accumulate_grad_batches=2)
    assert verified(path, keys["pub"], model="lit_models:dict_step_module", data="lit_models:few_digits")


def test_lightning_clipping_is_not_applied_twice(tmp_path: Path, keys: dict) -> None:
    """Were Lightning's own clipping left on, the recorder's self-check would stop the run (clipped twice)."""
    import pol.integrations.lightning as integration

    original = integration.ProofCallback._set

    def keep_lightning_clipping(self: Any, obj: Any, name: str, value: Any) -> None:
        if name != "gradient_clip_val":
            original(self, obj, name, value)

    integration.ProofCallback._set = keep_lightning_clipping  # type: ignore[method-assign]
    try:
        with pytest.raises(PlanError, match="does not reproduce"):
            fit(tmp_path / "twice.pol.h5", keys["key"], gradient_clip_val=0.05)
    finally:
        integration.ProofCallback._set = original  # type: ignore[method-assign]


def _fp16_plugin() -> Any:
    from lightning.pytorch.plugins.precision import MixedPrecision

    return [MixedPrecision("16-mixed", "cpu")]  # (precision="16-mixed" alone falls back to bf16 on CPU)


@pytest.mark.parametrize("kwargs, match", [
    ({"plugins": "fp16"}, "GradScaler"),
    ({"precision": "bf16-true"}, "float32"),
    ({"max_steps": STEPS + 1}, "max_steps=7"),
    ({"limit_train_batches": 0.5}, "limit_train_batches"),
])
def test_trainer_settings_refused_before_step_zero(kwargs: dict, match: str, tmp_path: Path, keys: dict) -> None:
    if kwargs.get("plugins") == "fp16":
        kwargs = {"plugins": _fp16_plugin()}
    with pytest.raises(PlanError, match=match):
        fit(tmp_path / "r.pol.h5", keys["key"], **kwargs)
    assert not (tmp_path / "r.pol.h5").exists()  # nothing signed


@pytest.mark.parametrize("spec, match", [
    ("lit_models:with_scheduler", "LR scheduler"),
    ("lit_models:manual", "manual optimization"),
    ("lit_models:own_optimizer_step", "optimizer_step is overridden"),
])
def test_module_settings_refused(spec: str, match: str, tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match=match):
        fit(tmp_path / "m.pol.h5", keys["key"], model_spec=spec)


def test_multi_device_strategy_refused(tmp_path: Path, keys: dict) -> None:
    from lit_models import digits_module

    with pol.Recorder(tmp_path / "x.pol.h5", key=keys["key"], every=EVERY, seed=5, steps=STEPS,
                      model_spec="lit_models:digits_module", data_spec="digits-mlp") as rec:
        trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", devices=2, strategy="ddp", logger=False)
        with pytest.raises(PlanError, match="only single-device training"):
            check_trainer(trainer, digits_module(), rec)


def test_the_trainer_must_iterate_the_recorded_loader(tmp_path: Path, keys: dict) -> None:
    data = pol.load_data("digits-mlp").train
    with pytest.raises(PlanError, match="does not iterate the recorded loader"):
        with pol.Recorder(tmp_path / "l.pol.h5", key=keys["key"], every=EVERY, seed=5, steps=STEPS,
                          model_spec="lit_models:digits_module", data_spec="digits-mlp") as rec:
            proof = ProofCallback(rec)
            proof.dataloader(torch.utils.data.DataLoader(data, batch_size=16))
            _trainer(proof).fit(rec.initial_model(),
                                train_dataloaders=torch.utils.data.DataLoader(data, batch_size=16, shuffle=True))


def test_training_step_that_needs_the_trainer_is_stopped_at_the_first_checkpoint(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="self.trainer"):
        fit(tmp_path / "t.pol.h5", keys["key"], model_spec="lit_models:uses_trainer")


def test_epoch_based_run(tmp_path: Path, keys: dict) -> None:
    """Recorder(epochs=2) with Trainer(max_epochs=2): 64 samples in batches of 16, 4 steps per epoch."""
    data = pol.load_data("lit_models:few_digits").train
    path = tmp_path / "e.pol.h5"
    with pol.Recorder(path, key=keys["key"], every=3, seed=5, model_spec="lit_models:digits_module",
                      data_spec="lit_models:few_digits", epochs=2) as rec:
        proof = ProofCallback(rec)
        trainer = _trainer(proof, max_steps=-1, max_epochs=2)
        trainer.fit(rec.initial_model(), train_dataloaders=proof.dataloader(
            torch.utils.data.DataLoader(data, batch_size=16)))
        assert trainer.global_step == rec.step == 8
    assert verified(path, keys["pub"], data="lit_models:few_digits")
