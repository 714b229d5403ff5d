"""Attacks on federated training with untrusted workers (``pol workers train --attack NAME``).

Each behaviour replaces an honest worker's round (see :mod:`pol.workers.behaviour`); the
benchmark ``scripts/bench_workers.py`` runs them against every aggregator. Names:

model-replacement, constrain-and-scale, naive-backdoor, label-flipping, free-rider-zero,
free-rider-noise, free-rider-copy, stale-update, sybil (the attacks); crash, hang and
malformed-* (failures, for tests).
"""

from __future__ import annotations

from scripts.attacks_workers.attacks import (
    Attack,
    ConstrainAndScale,
    FreeRiderCopy,
    FreeRiderNoise,
    FreeRiderZero,
    LabelFlipping,
    ModelReplacement,
    NaiveBackdoor,
    StaleUpdate,
    Sybil,
)
from scripts.attacks_workers.failures import Crash, Hang, Malformed

ATTACKS: dict[str, Attack] = {a.name: a for a in (
    ModelReplacement("model-replacement", "backdoored model scaled by gamma = n/eta"),
    ConstrainAndScale("constrain-and-scale", "backdoor with an anomaly-loss term, scaled by gamma"),
    NaiveBackdoor("naive-backdoor", "trigger samples mixed into its shard, unscaled"),
    LabelFlipping("label-flipping", "labels y -> 9 - y on its shard"),
    FreeRiderZero("free-rider-zero", "returns the global model"),
    FreeRiderNoise("free-rider-noise", "returns the global model plus noise"),
    FreeRiderCopy("free-rider-copy", "returns another worker's update"),
    StaleUpdate("stale-update", "resubmits its round-0 update"),
    Sybil("sybil", "f identities submit one backdoored update scaled by n/f"),
)}
FAILURES: dict[str, Attack] = {a.name: a for a in (
    Crash("crash", "process exits mid-round"),
    Hang("hang", "stops answering mid-round"),
    *(Malformed(f"malformed-{k}", f"malformed submission: {k}", k)
      for k in ("garbage", "truncated", "shape", "nan", "signature", "impersonation", "oversized")),
)}
BEHAVIOURS: dict[str, Attack] = {**ATTACKS, **FAILURES}

__all__ = ["ATTACKS", "BEHAVIOURS", "FAILURES", "Attack"]
