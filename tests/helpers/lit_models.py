"""LightningModules named by ``module:callable`` in the Lightning integration tests (needs lightning)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F


class DigitsModule(pl.LightningModule):
    """An MLP with dropout on the digits, one layer applied twice (under autocast its weight is cast
    once or twice depending on autocast's cache); AdamW with decay / no-decay groups; logs its loss."""

    def __init__(self, lr: float = 2e-3, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 10)
        self.drop = nn.Dropout(0.1)
        self.lr, self.label_smoothing = lr, label_smoothing

    def body(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.inp(x)))
        h = F.relu(self.hidden(F.relu(self.hidden(h))))
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        named = list(self.named_parameters())
        return torch.optim.AdamW([
            {"params": [p for n, p in named if n.endswith("weight")], "weight_decay": 0.01},
            {"params": [p for n, p in named if not n.endswith("weight")], "weight_decay": 0.0},
        ], lr=self.lr)


def digits_module(lr: float = 2e-3) -> DigitsModule:
    return DigitsModule(lr)


class DictStepModule(DigitsModule):
    """training_step returns a dict, calls the submodule directly (no forward hook), uses batch_idx."""

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        scale = 1.0 + (batch_idx % 3) * 0.1
        return {"loss": F.cross_entropy(self.body(x) * scale, y), "seen": torch.tensor(batch_idx)}


def dict_step_module() -> DictStepModule:
    return DictStepModule()


class WithScheduler(DigitsModule):
    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 5)}


def with_scheduler() -> WithScheduler:
    return WithScheduler()


class Manual(DigitsModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


def manual() -> Manual:
    return Manual()


class OwnOptimizerStep(DigitsModule):
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)


def own_optimizer_step() -> OwnOptimizerStep:
    return OwnOptimizerStep()


class UsesTrainer(DigitsModule):
    """A training_step that reads self.trainer: it cannot be replayed outside a Trainer."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y) * (1.0 + 0.0 * self.trainer.current_epoch)


def uses_trainer() -> UsesTrainer:
    return UsesTrainer()


def few_digits(n: int = 64) -> Any:
    """The first n digits samples: a few steps per epoch, so short runs cross epochs."""
    import pol
    from torch.utils.data import TensorDataset

    x, y = pol.load_data("digits-mlp").train.tensors
    return pol.tasks.TaskData(TensorDataset(x[:n], y[:n]))
