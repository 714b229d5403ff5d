"""The Hugging Face Trainer records proofs that verify (the issue's "done when" loop: AdamW with
decay / no-decay groups, linear warm-up, clipping, dict batches with masks, bf16 autocast,
gradient accumulation, a tiny BERT), and refuses before step 0 what it cannot record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import pol  # noqa: E402
from pol.errors import PlanError  # noqa: E402
from pol.integrations.hf import ProofTrainer, schedule_spec  # noqa: E402
from verifier import VerifyOptions, verify  # noqa: E402

STEPS, EVERY = 6, 3


def _args(tmp_path: Path, **changes: Any) -> Any:
    settings = dict(max_steps=STEPS, per_device_train_batch_size=8, learning_rate=2e-3, weight_decay=0.01,
                    warmup_steps=2, lr_scheduler_type="linear", max_grad_norm=0.5, gradient_accumulation_steps=2,
                    bf16=True, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                    disable_tqdm=True)
    settings.update(changes)
    return transformers.TrainingArguments(str(tmp_path / "out"), **settings)


def train(path: Path, key: Path, tmp_path: Path, model_spec: str = "hf_models:tiny_bert",
          data_spec: str = "recipes:dict_tokens", trainer_kwargs: dict | None = None, **arg_changes: Any) -> Path:
    with pol.Recorder(path, key=key, every=EVERY, seed=2, model_spec=model_spec, data_spec=data_spec,
                      steps=STEPS, overwrite=True) as rec:
        trainer = ProofTrainer(recorder=rec, model=rec.initial_model(), args=_args(tmp_path, **arg_changes),
                               train_dataset=pol.load_data(data_spec).train, **(trainer_kwargs or {}))
        trainer.train()
        assert trainer.state.global_step == STEPS and rec.step == STEPS
    return path


def test_fine_tuning_loop_records_and_pol_verify_accepts(tmp_path: Path, keys: dict, capsys: Any) -> None:
    path = train(tmp_path / "bert.pol.h5", keys["key"], tmp_path)
    with pol.ProofReader(path) as r:
        plan = r.plan
    assert plan.step["clip"] == {"kind": "norm", "max_norm": 0.5, "norm_type": 2.0}
    assert plan.step["autocast"] == {"device_type": "cpu", "dtype": "bfloat16"}
    assert plan.step["accumulation"] == 2 and plan.step["output"] == "loss"
    assert plan.step["batch"]["inputs"] == ["attention_mask", "input_ids", "labels"]
    assert plan.lr_schedule == {"kind": "linear", "lr": 2e-3, "total_steps": STEPS, "warmup_steps": 2}
    groups = plan.optimizer["groups"]
    assert plan.optimizer["type"] == "AdamW" and plan.optimizer["hparams"]["weight_decay"] == 0.01
    assert len(groups) == 2 and groups[1]["hparams"] == {"weight_decay": 0.0}
    assert any(n.endswith("LayerNorm.weight") for n in groups[1]["params"])  # no decay on norms and biases
    from cli_runner import run_json

    capsys.readouterr()  # (the Trainer prints its logs on stdout)
    code, doc = run_json(["verify", path, "--key", keys["pub"], "--model", "hf_models:tiny_bert",
                          "--data", "recipes:dict_tokens", "--segments", "2", "--seed", "0"], capsys)
    assert code == 0 and doc["verdict"] == "verified", doc


def test_causal_lm_with_tied_embeddings_and_cosine_schedule(tmp_path: Path, keys: dict) -> None:
    path = train(tmp_path / "gpt2.pol.h5", keys["key"], tmp_path, model_spec="hf_models:tiny_gpt2",
                 data_spec="hf_models:lm_tokens", lr_scheduler_type="cosine", warmup_steps=1, bf16=False,
                 gradient_accumulation_steps=1)
    with pol.ProofReader(path) as r:
        assert r.plan.lr_schedule["kind"] == "table"  # the Hugging Face warm-up differs from pol's cosine warm-up
    report = verify(path, public_key=str(keys["pub"]),
                    options=VerifyOptions(seed=0, segments=2, model="hf_models:tiny_gpt2", data="hf_models:lm_tokens"))
    assert report.verdict == "verified", report.to_json()


def test_schedule_mapping_reproduces_the_trainer_schedule(tmp_path: Path) -> None:
    from pol.schedule import lr_at

    for kind, warm, expect in (("linear", 3, "linear"), ("constant", 0, "constant"), ("cosine", 0, "cosine"),
                               ("cosine", 3, "table"), ("polynomial", 2, "table"),
                               ("constant_with_warmup", 2, "table")):
        args = _args(tmp_path, lr_scheduler_type=kind, warmup_steps=warm, max_steps=20)
        spec = schedule_spec(args, 20, 1e-3)
        assert spec["kind"] == expect, (kind, spec)
        import torch
        from transformers.optimization import get_scheduler

        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = get_scheduler(kind, optimizer=opt, num_warmup_steps=warm, num_training_steps=20)
        for t in range(20):
            assert abs(lr_at(spec, t) - opt.param_groups[0]["lr"]) <= 1e-15, (kind, t)
            opt.step()
            sched.step()


def test_the_loss_is_the_standard_division_not_token_weighting(tmp_path: Path, keys: dict) -> None:
    """transformers' num_items_in_batch normalisation is turned off: were it left on, a causal LM with
    padding and accumulation would train on another loss than the plan's, and the self-check stops it."""
    import pol.integrations.hf as hf

    class TokenWeighted(ProofTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = True

    original = hf.ProofTrainer
    hf.ProofTrainer = TokenWeighted  # type: ignore[misc]  # (check_arguments compares overrides with it)
    try:
        with pytest.raises(PlanError, match="does not reproduce"):
            with pol.Recorder(tmp_path / "w.pol.h5", key=keys["key"], every=EVERY, seed=2, steps=STEPS,
                              model_spec="hf_models:tiny_gpt2", data_spec="hf_models:lm_tokens") as rec:
                TokenWeighted(recorder=rec, model=rec.initial_model(), args=_args(tmp_path, bf16=False),
                              train_dataset=pol.load_data("hf_models:lm_tokens").train).train()
    finally:
        hf.ProofTrainer = original  # type: ignore[misc]


@pytest.mark.parametrize("changes, match", [
    ({"fp16": True, "bf16": False}, "GradScaler"),
    ({"label_smoothing_factor": 0.1}, "label_smoothing_factor"),
    ({"gradient_checkpointing": True}, "gradient checkpointing"),
    ({"max_steps": STEPS + 1}, "max_steps=7"),
    ({"lr_scheduler_type": "reduce_lr_on_plateau", "eval_strategy": "steps", "eval_steps": 3}, "evaluation metrics"),
    ({"optim": "adafactor"}, "Adafactor is not supported"),
])
def test_arguments_refused_before_step_zero(changes: dict, match: str, tmp_path: Path, keys: dict) -> None:
    evaluation = {"eval_dataset": pol.load_data("recipes:dict_tokens").train} if "eval_strategy" in changes else {}
    with pytest.raises(PlanError, match=match):
        train(tmp_path / "r.pol.h5", keys["key"], tmp_path, trainer_kwargs=evaluation, **changes)
    assert not (tmp_path / "r.pol.h5").exists()


def test_custom_collator_refused(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="data collator"):
        train(tmp_path / "c.pol.h5", keys["key"], tmp_path, trainer_kwargs={"data_collator": lambda f: f})


def test_a_scheduler_passed_in_is_refused(tmp_path: Path, keys: dict) -> None:
    import torch

    with pol.Recorder(tmp_path / "s.pol.h5", key=keys["key"], every=EVERY, seed=2, steps=STEPS,
                      model_spec="hf_models:tiny_bert", data_spec="recipes:dict_tokens") as rec:
        model = rec.initial_model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with pytest.raises(PlanError, match="optimizers=\\(optimizer, scheduler\\)"):
            ProofTrainer(recorder=rec, model=model, args=_args(tmp_path), optimizers=(
                opt, torch.optim.lr_scheduler.StepLR(opt, 2)), train_dataset=pol.load_data("recipes:dict_tokens").train)


def test_epoch_based_run(tmp_path: Path, keys: dict) -> None:
    """Recorder(epochs=2) with num_train_epochs=2: 64 samples, 8 per micro-batch, 2 per step: 8 steps."""
    data = pol.load_data("recipes:dict_tokens", {"n": 64}).train
    path = tmp_path / "e.pol.h5"
    with pol.Recorder(path, key=keys["key"], every=3, seed=2, model_spec="hf_models:tiny_bert",
                      data_spec="recipes:dict_tokens", data_kwargs={"n": 64}, epochs=2) as rec:
        trainer = ProofTrainer(recorder=rec, model=rec.initial_model(), train_dataset=data,
                               args=_args(tmp_path, max_steps=-1, num_train_epochs=2))
        trainer.train()
        assert trainer.state.global_step == rec.step == 8
    report = verify(path, public_key=str(keys["pub"]), options=VerifyOptions(
        seed=0, segments=3, model="hf_models:tiny_bert", data="recipes:dict_tokens"))
    assert report.verdict == "verified", report.to_json()
