"""The progress check: the model learned what it claims to have seen.

For each replayed segment j (start state S, recorded end E, the segment's own batches O and
an equal-sized sample of held-out data H)::

    own_drop  = loss(S, O) - loss(E, O)
    held_drop = loss(S, H) - loss(E, H)

Honest training lowers the loss on the batches it trained on by more than on data it never
saw. Checkpoints that did not come from training on the committed batches (interpolated,
crafted, or trained on other data) show no such advantage. The two drops are measured on
different samples, so single segments are noisy: the check aggregates the margins
``own_drop - held_drop`` over the replayed segments and rejects only when their sum is
significantly negative: below ``-t`` standard errors, the standard error estimated from the
per-segment spread and ``t`` the one-sided Student-t quantile for ``n - 1`` degrees of freedom
at a false-alarm rate of 1e-3 (with two or three segments the spread is itself so uncertain that
a normal ``Z = 3`` rejected an honest proof whose two margins happened to agree). In exact mode
the check is not run at all: a segment that replays bitwise was, by that fact, produced by
training on the claimed batches, so the figure could only add false alarms; it is reported in
``info``. With a single replayed segment (e.g. single-step challenges, which replay only the last segment)
there is no spread to estimate: the figure is reported in ``info`` and the check is not run.
A zero margin is reported but, on its own, not treated as proof of forgery: replay is the
primary check, and this figure is the corroborating one (it matters most in tolerance and
legacy modes). Losses: train-mode forward, no gradients, no updates (verifier.replay).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pol.state import State
from verifier.replay import BatchSource, Replayer
from verifier.report import Check


class HeldOut:
    """A fixed held-out sample, batched like the training batches."""

    def __init__(self, dataset: Any, batch_size: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.n = len(dataset)
        self._sources: dict[str, BatchSource] = {}

    def source(self, device: str) -> BatchSource:
        """The held-out tensors on ``device``, moved there once (not once per segment)."""
        if device not in self._sources:
            self._sources[device] = BatchSource(self.dataset, device)
        return self._sources[device]

    def batches(self, count: int, salt: int) -> np.ndarray:
        rng = np.random.default_rng(salt)
        size = min(self.n, count * self.batch_size)
        picked = rng.choice(self.n, size=size, replace=False)
        usable = (size // self.batch_size) * self.batch_size or size
        return picked[:usable].reshape(-1, min(self.batch_size, usable))


@dataclass(frozen=True)
class SegmentProgress:
    segment: int
    own_drop: float
    held_drop: float

    @property
    def margin(self) -> float:
        return self.own_drop - self.held_drop

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "margin": self.margin}


def segment_progress(replayer: Replayer, heldout: HeldOut, segment: int, start: State, end: State,
                     own: np.ndarray) -> SegmentProgress:
    held, source = heldout.batches(len(own), salt=segment), heldout.source(replayer.device)
    own_before, own_after = replayer.mean_loss(start, own), replayer.mean_loss(end, own)
    held_before, held_after = replayer.mean_loss(start, held, source), replayer.mean_loss(end, held, source)
    return SegmentProgress(segment, own_before - own_after, held_before - held_after)


# One-sided Student-t quantiles at 1 - 1e-3 by degrees of freedom (scipy.stats.t.ppf(0.999, df)).
# Between listed values the next smaller df's (larger, so stricter about rejecting) quantile is
# used; beyond 60 the df = 60 one (3.23; the normal's is 3.09).
_T_999 = ((1, 318.31), (2, 22.33), (3, 10.21), (4, 7.17), (5, 5.89), (6, 5.21), (7, 4.79), (8, 4.50),
          (9, 4.30), (10, 4.14), (12, 3.93), (15, 3.73), (20, 3.55), (30, 3.39), (60, 3.23))
MIN_SEGMENTS = 2


def critical_t(df: int) -> float:
    """The rejection threshold, in standard errors, for a sum of ``df + 1`` segment margins."""
    value = _T_999[0][1]
    for listed, quantile in _T_999:
        if df >= listed:
            value = quantile
    return value


EXACT_MODE = ("informational in exact mode: a segment that replays bitwise was produced by training on the "
              "claimed batches, which is what this figure corroborates")
SINGLE_SEGMENT = ("not judged: one replayed segment gives no spread to judge its margin against (an honest "
                  "segment's margin alone can be clearly negative late in training)")


def progress_check(figures: list[SegmentProgress]) -> Check:
    if not figures:
        return Check("progress", None, "no segments", "no replayed segment to measure")
    own = sum(f.own_drop for f in figures)
    held = sum(f.held_drop for f in figures)
    margins = np.asarray([f.margin for f in figures])
    margin = float(margins.sum())
    if len(margins) < MIN_SEGMENTS:
        return Check("progress", None, f"margin {margin:+.3g} over 1 segment", SINGLE_SEGMENT)
    spread = float(margins.std(ddof=1)) * np.sqrt(len(margins))  # standard error of the sum
    figure = (f"own-batch loss drop {own:+.4g} vs held-out {held:+.4g} (margin {margin:+.3g}, "
              f"s.e. {spread:.2g}) over {len(figures)} segment(s)")
    if margin >= -critical_t(len(margins) - 1) * spread and not (margin < 0 and spread == 0):
        detail = ("the model improved more on the batches it claims to have trained on" if margin > 0 else
                  "no clear advantage on the claimed batches, within noise")
        return Check("progress", True, figure, detail)
    return Check("progress", False, figure,
                 "the recorded updates improved unseen data significantly more than the batches they claim "
                 "(checkpoints not produced by training on the claimed batches)")
