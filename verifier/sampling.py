"""Choosing what to replay, and the detection probability that choice gives.

**Uniform draw.** Units (segments, or single steps when the prover answers step challenges) are
drawn uniformly without replacement with randomness the prover cannot predict (the verifier's own
seed, or OS entropy). If a fraction ``f`` of the ``n`` units is forged (``m = ceil(f*n)``) and
``s`` are replayed, the chance that at least one forged unit is replayed is
``1 - C(n-m, s) / C(n, s)`` (:func:`detection_probability`). :func:`samples_for` inverts it: the
smallest ``s`` reaching a requested confidence (``pol verify --confidence 0.99 --forged-fraction 0.1``).

**Targeted replay.** Besides the uniform draw the verifier always replays:

* the last segment (it produces the claimed weights);
* for each figure of :mod:`verifier.scan` (LR-normalised update, raw update, movement toward the
  final weights), the ``top`` intervals where it is largest: a forger who concentrates its
  forgery in a few large jumps is caught whichever of these it hides from;
* the segment *before* each targeted one, and the segments ending at the checkpoints whose
  optimizer state is largest: a start state with crafted momentum is the end of the previous
  segment, which must replay to it.

A single forged segment is then caught with certainty when it is one of these; otherwise with the
uniform draw's probability ``s/n``. The report says which (``single_segment``).
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from verifier.scan import CheckpointScan

DEFAULT_TOP = 2


def default_segment_count(n: int) -> int:
    """About 4% of the segments, at least 4 (all of them for short runs)."""
    return min(n, max(4, math.ceil(0.04 * n)))


def choose_segments(n: int, count: int, seed: int | None) -> tuple[list[int], int]:
    """Pick ``count`` of ``n`` units; returns (sorted choice, the seed used)."""
    if seed is None:
        seed = secrets.randbits(63)
    rng = random.Random(seed)
    return sorted(rng.sample(range(n), min(count, n))), seed


def _top(figures: Mapping[tuple[int, int], float], count: int) -> list[tuple[int, int]]:
    ranked = sorted(figures, key=lambda ab: (-figures[ab], ab))
    return ranked[:count]


@dataclass
class Targeted:
    """Segments replayed on purpose, by reason (each a sorted list of segment numbers)."""

    reasons: dict[str, list[int]] = field(default_factory=dict)

    @property
    def segments(self) -> list[int]:
        return sorted({j for js in self.reasons.values() for j in js})


def targeted_segments(scan: CheckpointScan, n: int, top: int = DEFAULT_TOP,
                      last_stretch: int | None = None) -> Targeted:
    """The segments the verifier replays on purpose (see the module docstring).

    ``last_stretch``: for compact proofs, the first segment of the stretch after the last stored
    anchor (all of it is replayed: the weights in between are not stored to rank).
    """
    out = Targeted()
    if n <= 0:
        return out
    # (``top=0`` is the private choice: the last segment only, even in a compact proof)
    out.reasons["last segment"] = [n - 1] if last_stretch is None or top <= 0 else list(range(last_stretch, n))
    if top <= 0:
        return out
    for reason, figures in (("largest LR-normalised update", scan.update_size), ("largest raw update", scan.raw_update),
                            ("largest move toward the final weights", scan.toward_final)):
        picked: set[int] = set()
        for a, b in _top(figures, top):
            picked.update(range(a, b))
            if a > 0:
                picked.add(a - 1)  # the segment that produced the start state (its momentum included)
        out.reasons[reason] = sorted(j for j in picked if j < n)
    ranked = sorted(scan.optimizer_norm, key=lambda i: (-scan.optimizer_norm[i], i))
    out.reasons["largest optimizer state (replayed up to it)"] = sorted({i - 1 for i in ranked[:top] if 0 < i <= n})
    return out


def samples_for(n: int, confidence: float, forged_fraction: float) -> int:
    """Smallest number of units to draw so that a forged fraction is caught with ``confidence``."""
    if not 0 < confidence < 1 or not 0 < forged_fraction <= 1:
        raise ValueError("confidence must be in (0, 1) and forged_fraction in (0, 1]")
    for s in range(1, n + 1):
        if detection_probability(n, s, forged_fraction) >= confidence:
            return s
    return n


def smallest_detectable_fraction(n: int, s: int, probability: float) -> float | None:
    """Smallest forged fraction f (in steps of 1/n) caught with at least ``probability``."""
    lo, hi = 1, n
    if n <= 0 or detection_probability(n, s, 1.0) < probability:
        return None
    while lo < hi:  # detection probability grows with m
        mid = (lo + hi) // 2
        if detection_probability(n, s, mid / n) >= probability:
            hi = mid
        else:
            lo = mid + 1
    return round(lo / n, 4)


def detection_probability(n: int, s: int, f: float) -> float:
    if n <= 0 or s <= 0:
        return 0.0
    m = min(n, math.ceil(f * n - 1e-9))
    s = min(s, n)
    if n - m < s:
        return 1.0
    miss = 1.0  # C(n-m, s) / C(n, s) as a product: no huge integers for long runs
    for i in range(s):
        miss *= (n - m - i) / (n - i)
    return 1.0 - miss
