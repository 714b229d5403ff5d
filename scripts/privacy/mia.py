"""Membership-inference attacks over what an access level exposes.

Per-sample signal: the logit-scaled confidence on the true label,
``phi = z_y - logsumexp(z_other)`` (Carlini et al. 2022, "LiRA"); the loss is a monotone
function of it. Attacks, each giving "higher = more likely a member":

* ``loss_threshold`` — minus the loss under the last weights in view (Yeom et al. 2018): no
  shadow models, no calibration.
* ``lira_offline`` — phi under the last weights in view, calibrated per sample against the
  attacker's shadow models that did not train on it: ``(phi - mu_out[i]) / sigma_out``
  (offline LiRA with a global variance, which Carlini et al. recommend for few shadows).
* ``trajectory`` — the calibrated score at *every* checkpoint in view, combined by a logistic
  regression the attacker fits on its shadow models, where it knows membership (each shadow in
  turn plays the target, calibrated against the others): the loss-trajectory attack of Liu
  et al. 2022 in calibrated form. With one checkpoint in view it reduces to ``lira_offline``.

Without weights (commitments only) the attacker has the plan, hence the seeded initial weights,
and the commitment bytes:

* ``init_loss`` — minus the loss under the initial weights (the only weights it can compute);
* ``commitment_similarity`` — the shadows (which the attacker trained and committed itself, with
  fresh blindings as the trainer does) vote on each candidate, weighted by how many bits their
  commitment shares with the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from scripts.privacy.data import digits_universe
from scripts.privacy.runs import MODEL_SPEC, Shadow, TrainConfig, Weights

TRAJECTORY_ATTACKS = ("loss_threshold", "lira_offline", "trajectory")
COMMITMENT_ATTACKS = ("init_loss", "commitment_similarity")


class Scorer:
    """phi and loss of every universe sample under given weights (one model, reloaded)."""

    def __init__(self, cfg: TrainConfig):
        import torch

        from pol.tasks import build_model

        self._torch = torch
        self.model = build_model(MODEL_SPEC, cfg.model_kwargs).eval()
        x, y = digits_universe()
        self.x, self.y = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    def _load(self, weights: Weights) -> None:
        self.model.load_state_dict({k: self._torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)

    def phi_loss(self, weights: Weights) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        self._load(weights)
        with torch.no_grad():
            z = self.model(self.x).double()
        true = z.gather(1, self.y[:, None]).squeeze(1)
        other = z.scatter(1, self.y[:, None], float("-inf")).logsumexp(1)
        loss = z.logsumexp(1) - true
        return (true - other).numpy(), loss.numpy()

    def accuracy(self, weights: Weights, idx: np.ndarray) -> float:
        """Top-1 accuracy of these weights on the universe samples ``idx``."""
        torch = self._torch
        self._load(weights)
        i = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        with torch.no_grad():
            return float((self.model(self.x[i]).argmax(1) == self.y[i]).double().mean())


@dataclass(frozen=True)
class ShadowStats:
    """phi of every universe sample under every shadow checkpoint, and who trained on what."""

    phi: np.ndarray        # (shadows, checkpoints, universe)
    member: np.ndarray     # (shadows, universe) bool
    fitted: dict[tuple[int, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, scorer: Scorer, shadows: Sequence[Shadow]) -> ShadowStats:
        phi = np.stack([np.stack([scorer.phi_loss(w)[0] for w in s.checkpoints]) for s in shadows])
        return cls(phi, np.stack([s.members for s in shadows]))

    @staticmethod
    def _out_mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Per checkpoint and sample, the mean phi over OUT shadows (over all samples where none is OUT)."""
        fallback = total.sum(1, keepdims=True) / max(float(count.sum()), 1.0)
        return np.where(count > 0, total / np.maximum(count, 1), fallback)

    @cached_property
    def _out(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        out = (~self.member).astype(np.float64)[:, None, :]           # (S, 1, N)
        total, count = (self.phi * out).sum(0), out.sum(0)            # (C, N), (1, N)
        mu = self._out_mean(total, count)
        resid = (self.phi - mu[None]) * out
        sigma = np.sqrt((resid ** 2).sum((0, 2)) / max(float(out.sum()) - 1, 1.0))  # (C,), one per checkpoint
        return total, count, mu, np.maximum(sigma, 1e-6)

    def calibrated(self, phi: np.ndarray, cols: Sequence[int], idx: np.ndarray) -> np.ndarray:
        """(len(cols), len(idx)) z-scores of a model's phi at checkpoints ``cols`` for samples ``idx``."""
        _, _, mu, sigma = self._out
        c = list(cols)
        return (phi - mu[c][:, idx]) / sigma[c][:, None]

    def calibrated_loo(self, s: int, cols: Sequence[int]) -> np.ndarray:
        """Shadow ``s`` playing the target, calibrated against the other shadows only."""
        total, count, _, sigma = self._out
        out_s = (~self.member[s]).astype(np.float64)[None, :]
        mu = self._out_mean(total - self.phi[s] * out_s, count - out_s)
        c = list(cols)
        return (self.phi[s][c] - mu[c]) / sigma[c][:, None]


def _logistic(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")).fit(x, y)


def fit_trajectory(stats: ShadowStats, cols: Sequence[int]) -> Any:
    """The attacker's combiner over checkpoints ``cols``, fitted on its shadows (membership known);
    kept per set of checkpoints, which views of the same plan share."""
    key = tuple(cols)
    if key not in stats.fitted:
        x = np.concatenate([stats.calibrated_loo(s, cols).T for s in range(len(stats.member))])
        stats.fitted[key] = _logistic(x, np.concatenate(list(stats.member)).astype(int))
    return stats.fitted[key]


def view_scores(scorer: Scorer, checkpoints: dict[int, Weights], stats: ShadowStats,
                candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of the three trajectory attacks for the candidates, from the checkpoints in view."""
    cols = sorted(checkpoints)
    phi = np.empty((len(cols), len(candidates)))
    loss_last = None
    for r, i in enumerate(cols):
        p, loss = scorer.phi_loss(checkpoints[i])
        phi[r] = p[candidates]
        if i == cols[-1]:
            loss_last = loss[candidates]
    assert loss_last is not None
    z = stats.calibrated(phi, cols, candidates)
    return {"loss_threshold": -loss_last, "lira_offline": z[-1],
            "trajectory": fit_trajectory(stats, cols).decision_function(z.T)}


# -- commitments only ------------------------------------------------------------------------
def commit_weights(weights: Weights, committer: Any) -> bytes:
    """The chunk commitments of these weights, as the zk layer commits a checkpoint
    (``model/*`` float tensors by name, quantised; fresh secret blindings)."""
    tensors = {f"model/{k}": v for k, v in weights.items() if np.issubdtype(v.dtype, np.floating)}
    _layout, com, _blindings, _values, _clipped = committer.commit_tensors(tensors)
    return b"".join(com.chunks)


def commitment_similarity_scores(target_commitment: bytes, shadow_commitments: Sequence[bytes],
                                 stats: ShadowStats, candidates: np.ndarray) -> np.ndarray:
    """``commitment_similarity``: membership voted by the shadows whose commitments look most like
    the target's. Agreement ``a_s`` = fraction of equal bits minus 1/2; a candidate scores
    ``sum_s a_s * (+1 if shadow s trained on it else -1)``. If commitments carried the weights,
    similar training sets would give similar bits; hiding commitments make every ``a_s`` noise."""
    target = np.unpackbits(np.frombuffer(target_commitment, dtype=np.uint8))
    agree = np.array([np.mean(np.unpackbits(np.frombuffer(c, dtype=np.uint8)) == target) - 0.5
                      for c in shadow_commitments])
    votes = np.where(stats.member[:, candidates], 1.0, -1.0)
    return agree @ votes


def init_loss_scores(scorer: Scorer, init_weights: Weights, candidates: np.ndarray) -> np.ndarray:
    return -scorer.phi_loss(init_weights)[1][candidates]
