"""Label inference by a node that holds no labels, from the gradients it receives.

In split learning the label owner sends back, for every example of a batch, the gradient of
the loss with respect to the activations it received (plain split), or the data-and-label
owner's head sends the gradient with respect to the middle node's outputs (U-shaped split).
These functions take those tensors as they are received — one :class:`CutGradients` per step,
one row per example — and do not care how they were obtained: an in-process simulation
(:mod:`scripts.privacy.split_sim`) or a pipeline's recorded boundary transcript.

Attacks (Li et al. 2022, "Label leakage and protection in two-party split learning"):

* ``norm`` — the gradient's L2 norm: with imbalanced labels the minority (positive) class is
  fitted worse, so its examples get larger gradients.
* ``cosine`` — the cosine similarity with the gradient of one example whose label the attacker
  knows to be positive (one per batch, excluded from scoring): gradients of the same class
  point the same way.

Leak AUC is computed per batch (the ROC AUC of the scores against "label is positive") and
averaged over the batches that hold both classes, as Li et al. report it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scripts.privacy.metrics import roc_auc

ATTACKS = ("norm", "cosine")


@dataclass(frozen=True)
class CutGradients:
    """What a non-label node received at one step: one gradient row per example of the batch."""

    step: int
    indices: np.ndarray     # (batch,) dataset index of each row
    grads: np.ndarray       # (batch, ...) gradient w.r.t. the activations at the cut

    def rows(self) -> np.ndarray:
        return np.asarray(self.grads, dtype=np.float64).reshape(len(self.indices), -1)


def norm_scores(grads: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(grads, dtype=np.float64).reshape(len(grads), -1), axis=1)


def cosine_scores(grads: np.ndarray, reference: np.ndarray) -> np.ndarray:
    g = np.asarray(grads, dtype=np.float64).reshape(len(grads), -1)
    r = np.asarray(reference, dtype=np.float64).ravel()
    denom = np.linalg.norm(g, axis=1) * np.linalg.norm(r)
    return np.divide(g @ r, denom, out=np.zeros(len(g)), where=denom > 0)


def batch_leak_auc(batch: CutGradients, positive: np.ndarray, attack: str) -> float | None:
    """Leak AUC of one batch; ``positive[i]`` says whether dataset example i is positive.
    None when the batch cannot be scored (one class only, or no known positive for cosine)."""
    g, pos = batch.rows(), np.asarray(positive, dtype=bool)[batch.indices]
    if attack == "norm":
        scores, truth = norm_scores(g), pos
    elif attack == "cosine":
        known = np.flatnonzero(pos)
        if len(known) == 0:
            return None
        keep = np.ones(len(pos), dtype=bool)
        keep[known[0]] = False                    # the one example whose label the attacker knows
        scores, truth = cosine_scores(g[keep], g[known[0]]), pos[keep]
    else:
        raise ValueError(f"unknown attack {attack!r}; expected one of {ATTACKS}")
    if truth.all() or not truth.any():
        return None
    return roc_auc(scores, truth)


def leak_aucs(transcript: Sequence[CutGradients], positive: np.ndarray, attack: str) -> np.ndarray:
    """Per-batch leak AUCs over a transcript (batches that cannot be scored are left out)."""
    values = [batch_leak_auc(b, positive, attack) for b in transcript]
    return np.array([v for v in values if v is not None], dtype=np.float64)


def shuffled_within_batches(transcript: Sequence[CutGradients], seed: int) -> list[CutGradients]:
    """A control: every batch's gradient rows reassigned to its examples at random, so the rows
    carry no information about whose label they are (a fresh permutation per batch)."""
    rng = np.random.default_rng(seed)
    return [CutGradients(b.step, b.indices, b.rows()[rng.permutation(len(b.indices))]) for b in transcript]


def denoised(transcript: Sequence[CutGradients], noise_direction: Callable[[int, tuple[int, ...]], np.ndarray],
             per_example: bool = False) -> list[CutGradients]:
    """What an attacker who can regenerate the noise (it knows the seed) recovers.

    ``noise_direction(step, shape)`` regenerates the unit-variance Gaussian draw of that step;
    the scale the sender applied (it depends on the clean gradients) is unknown to the attacker,
    so it is fitted by least squares, per batch or ``per_example``, and the fitted noise removed.
    """
    out = []
    for b in transcript:
        g = b.rows()
        r = np.asarray(noise_direction(b.step, g.shape), dtype=np.float64).reshape(g.shape)
        if per_example:
            scale = np.einsum("ij,ij->i", g, r) / np.maximum(np.einsum("ij,ij->i", r, r), 1e-30)
            g = g - scale[:, None] * r
        else:
            g = g - (np.vdot(g, r) / max(float(np.vdot(r, r)), 1e-30)) * r
        out.append(CutGradients(b.step, b.indices, g))
    return out
