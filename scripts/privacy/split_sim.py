"""An in-process two-party split of a digits MLP: the tensors a split pipeline would exchange.

The network is ``bottom -> middle -> head``: ``Linear(64, h) + ReLU``, ``Linear(h, h) + ReLU``,
``Linear(h, classes)``, trained with SGD + momentum on the built-in digits split (1,500 train,
297 held out; ``pol.tasks``).

* ``plain`` — the data owner holds ``bottom``; the label owner holds ``middle + head`` and the
  loss. The data owner (no labels) receives the gradient of the loss with respect to the
  activations it sent.
* ``u_shaped`` — the data owner holds ``bottom`` *and* ``head`` with the labels; a middle node
  holds ``middle``. The middle node (no labels) receives the gradient of the loss with respect
  to its outputs from the data owner's head.

Every step's received gradients are kept as a transcript of
:class:`scripts.privacy.label_leakage.CutGradients`.

**Protection** (Li et al. 2022): the sender adds Gaussian noise to the gradient it sends:

* ``iso`` — isotropic noise of standard deviation ``ratio * max_i ||g_i|| / sqrt(d)`` (so a
  noise vector's norm is about ``ratio`` times the batch's largest gradient norm);
* ``max_norm`` — per example, noise of variance ``(max_j ||g_j||^2 - ||g_i||^2) / d``, which
  equalises the expected norms (the norm attack's signal) and leaves directions alone.

The noise of step ``t`` is drawn from ``torch.Generator().manual_seed(derive_seed(noise_seed,
"label-noise", t))``: a function of a committed seed and the step, so the sender's stage replays
bitwise. Whoever knows ``noise_seed`` can regenerate the draw and remove it
(:func:`scripts.privacy.label_leakage.denoised`): the noise protects the labels only from
parties that do not learn the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.privacy.label_leakage import CutGradients

SPLITS = ("plain", "u_shaped")
PROTECTIONS = ("none", "iso", "max_norm")


@dataclass(frozen=True)
class SplitConfig:
    split: str = "plain"
    classes: int = 2                 # 2: "is it a 0" (about 10% positives); 10: the digit
    hidden: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    protection: str = "none"
    noise_ratio: float = 1.0         # iso only
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.protection not in PROTECTIONS:
            raise ValueError(f"protection must be one of {PROTECTIONS}, got {self.protection!r}")
        if self.classes not in (2, 10):
            raise ValueError("classes must be 2 (digit 0 vs rest) or 10")


@dataclass
class SplitRun:
    config: SplitConfig
    transcript: list[CutGradients]
    positive: np.ndarray             # per training example: label is the positive class (digit 0)
    test_accuracy: float
    test_balanced_accuracy: float
    weights: dict[str, np.ndarray] = field(repr=False)


def task_labels(y10: np.ndarray, classes: int) -> np.ndarray:
    return (np.asarray(y10) == 0).astype(np.int64) if classes == 2 else np.asarray(y10, dtype=np.int64)


def noise_direction(noise_seed: int, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """The unit-variance Gaussian draw of ``step`` (what a party holding the seed regenerates)."""
    import torch

    from pol.hashing import derive_seed

    g = torch.Generator().manual_seed(derive_seed(noise_seed, "label-noise", step))
    return torch.randn(shape, generator=g, dtype=torch.float32).numpy()


def protect(grad: Any, cfg: SplitConfig, step: int) -> Any:
    """The gradient the sender actually sends (noise from the committed seed, or none)."""
    import torch

    if cfg.protection == "none":
        return grad
    flat = grad.reshape(len(grad), -1)
    d = flat.shape[1]
    r = torch.from_numpy(noise_direction(cfg.noise_seed, step, tuple(flat.shape)))
    norms = flat.norm(dim=1)
    biggest = norms.max()
    if cfg.protection == "iso":
        scale = cfg.noise_ratio * biggest / d ** 0.5
        return (flat + scale * r).reshape(grad.shape)
    scale = ((biggest ** 2 - norms ** 2).clamp_min(0) / d).sqrt()
    return (flat + scale[:, None] * r).reshape(grad.shape)


def _parts(cfg: SplitConfig, seed: int) -> tuple[Any, Any, Any]:
    import torch
    from torch import nn

    from pol.hashing import derive_seed

    torch.manual_seed(derive_seed(seed, "split-init"))
    return (nn.Sequential(nn.Linear(64, cfg.hidden), nn.ReLU()),
            nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU()),
            nn.Linear(cfg.hidden, cfg.classes))


def train_split(cfg: SplitConfig, seed: int) -> SplitRun:
    """Train the split model; the transcript holds what the non-label node received."""
    import torch
    from torch.nn import functional as F

    from pol.sampler import BatchSchedule
    from pol.tasks import load_data

    data = load_data("digits-mlp")
    x, y10 = data.train.tensors
    xt, yt10 = data.heldout.tensors
    truth = task_labels(y10.numpy(), cfg.classes)
    y_t = torch.from_numpy(truth)
    bottom, middle, head = _parts(cfg, seed)
    opts = [torch.optim.SGD(p.parameters(), lr=cfg.lr, momentum=cfg.momentum) for p in (bottom, middle, head)]
    schedule = BatchSchedule(seed, len(truth), cfg.batch_size)
    transcript: list[CutGradients] = []
    for step in range(cfg.epochs * schedule.steps_per_epoch):
        idx = schedule.indices(step)
        b = torch.from_numpy(idx)
        for o in opts:
            o.zero_grad(set_to_none=True)
        a1 = bottom(x[b])
        a1_in = a1.detach().requires_grad_()                 # the label owner / middle node receives a1
        if cfg.split == "plain":
            loss = F.cross_entropy(head(middle(a1_in)), y_t[b])
            loss.backward()
            sent = protect(a1_in.grad, cfg, step)             # label owner -> data owner
            a1.backward(sent)
        else:
            a2 = middle(a1_in)
            a2_in = a2.detach().requires_grad_()             # the data owner's head receives a2
            loss = F.cross_entropy(head(a2_in), y_t[b])
            loss.backward()
            sent = protect(a2_in.grad, cfg, step)             # data owner's head -> middle node
            a2.backward(sent)
            a1.backward(a1_in.grad)                          # middle node -> data owner
        transcript.append(CutGradients(step, idx, sent.detach().numpy().copy()))
        for o in opts:
            o.step()
    with torch.no_grad():
        pred = head(middle(bottom(xt))).argmax(1).numpy()
    truth_t = task_labels(yt10.numpy(), cfg.classes)
    balanced = float(np.mean([(pred[truth_t == c] == c).mean() for c in np.unique(truth_t)]))
    weights = {f"{name}.{k}": v.detach().numpy().copy()
               for name, part in (("bottom", bottom), ("middle", middle), ("head", head))
               for k, v in part.state_dict().items()}
    return SplitRun(cfg, transcript, truth == (1 if cfg.classes == 2 else 0), float((pred == truth_t).mean()),
                    balanced, weights)
