"""Choosing segments to replay, and the detection probability that choice gives.

Segments are drawn uniformly without replacement with randomness the prover cannot predict
(the verifier's own seed, or OS entropy). If a fraction ``f`` of the ``n`` segments is forged
(``m = ceil(f*n)`` of them) and ``s`` are replayed, the chance that at least one forged
segment is replayed is ``1 - C(n-m, s) / C(n, s)``.

Besides the uniform draw, the verifier replays the segments with the largest LR-normalised
updates (verifier.scan): a forger who concentrates its forgery in a few large jumps is caught
deterministically, and one who spreads it thin is exposed to the uniform draw.
"""

from __future__ import annotations

import math
import random
import secrets


def default_segment_count(n: int) -> int:
    """About 4% of the segments, at least 4 (all of them for short runs)."""
    return min(n, max(4, math.ceil(0.04 * n)))


def choose_segments(n: int, count: int, seed: int | None) -> tuple[list[int], int]:
    """Pick ``count`` of ``n`` segments; returns (sorted choice, the seed used)."""
    if seed is None:
        seed = secrets.randbits(63)
    rng = random.Random(seed)
    return sorted(rng.sample(range(n), min(count, n))), seed


def largest_updates(sizes: dict[int, float], count: int) -> list[int]:
    """The ``count`` segments with the largest LR-normalised updates (ties: lower index)."""
    ranked = sorted(sizes, key=lambda j: (-sizes[j], j))
    return sorted(ranked[:count])


def smallest_detectable_fraction(n: int, s: int, probability: float) -> float | None:
    """Smallest forged fraction f (in steps of 1/n) caught with at least ``probability``."""
    for m in range(1, n + 1):
        if detection_probability(n, s, m / n) >= probability:
            return round(m / n, 4)
    return None


def detection_probability(n: int, s: int, f: float) -> float:
    if n <= 0 or s <= 0:
        return 0.0
    m = min(n, math.ceil(f * n))
    s = min(s, n)
    if n - m < s:
        return 1.0
    return 1.0 - math.comb(n - m, s) / math.comb(n, s)
