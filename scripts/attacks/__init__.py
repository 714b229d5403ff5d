"""Forgery generators against proof-of-learning (see docs/SECURITY.md).

Each generator plays an attacker who holds its own signing key, the victim's honest proof (or
its final weights) and the public task code and data, and writes a validly signed, chained
proof in our format that claims training which did not happen as stated::

    from scripts.attacks import ATTACKS, load_victim
    forgery = ATTACKS["interpolation"](load_victim("victim.pol.h5"), "forged.pol.h5", "attacker.key", seed=1)
    forgery.expected_checks     # {"replay"}: what the verifier must name when it rejects it

Command line: ``python -m scripts.attacks NAME --victim victim.pol.h5 --key attacker.key --out forged.pol.h5``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from scripts.attacks import (
    adaptive,
    adversarial,
    blindfold,
    data_substitution,
    drift,
    fabricated_init,
    grind,
    interpolation,
    jump,
    splice,
    stale,
    structure,
)
from scripts.attacks.common import Forgery, Victim, load_victim

Generator = Callable[..., Forgery]

# name -> generator(victim, out, key, seed) ; variants are partials of the same module.
ATTACKS: dict[str, Generator] = {
    "interpolation": interpolation.forge,
    "interpolation-lr0": partial(interpolation.forge, lr=1e-8),
    "blindfold-top-q": blindfold.forge,
    "adversarial-near-perturbed": partial(adversarial.forge, start="near", commit="perturbed"),
    "adversarial-near-real": partial(adversarial.forge, start="near", commit="real"),
    "adversarial-seeded-real": partial(adversarial.forge, start="seeded", commit="real"),
    "fabricated-init": partial(fabricated_init.forge, mode="disguised"),
    "fabricated-init-fresh": partial(fabricated_init.forge, mode="fresh"),
    "splice": splice.forge,
    "splice-reindexed": partial(splice.forge, reindex=True),
    "data-substitution-real": partial(data_substitution.forge, commit="real"),
    "data-substitution-committed": partial(data_substitution.forge, commit="substituted"),
    "data-substitution-one-label": partial(data_substitution.forge, commit="real", fraction=1),
    "stale-proof": stale.forge,
    "single-jump": jump.forge,
    "tolerance-drift": drift.forge,
    # adaptive forgeries against the verifier's own rules (issue 11)
    "zero-compute": adaptive.zero_compute,
    "zero-compute-torch-suffix": partial(adaptive.zero_compute, claim="torch-suffix"),
    "zero-compute-cuda": partial(adaptive.zero_compute, claim="cuda"),
    "momentum-jump": partial(adaptive.momentum_jump, claim=None),
    "momentum-jump-cuda": adaptive.momentum_jump,
    "lr-masked-jump": adaptive.lr_masked_jump,
    "compact-final-jump": structure.compact_final_jump,
    "missing-checkpoint": structure.missing_checkpoint,
    "ground-fiat-shamir": grind.ground_fiat_shamir,
    "victim-seed-continuation": grind.victim_seed_continuation,
    "nan-final": structure.nan_final,
    "float16-final": structure.float16_final,
    "extra-tensor": structure.extra_tensor,
    "skip-batches": structure.skip_batches,
}

DESCRIPTIONS: dict[str, str] = {
    "interpolation": "(a) checkpoints interpolated init -> W, task LR in the plan",
    "interpolation-lr0": "(a) checkpoints interpolated init -> W, LR 1e-8 committed",
    "blindfold-top-q": "(b) genuine training on 1 boosted segment per epoch, rest interpolated",
    "adversarial-near-perturbed": "(c) Zhang et al.: start near W, crafted batches, perturbed data committed",
    "adversarial-near-real": "(c) Zhang et al.: start near W, crafted batches, real data root kept",
    "adversarial-seeded-real": "(c) crafted batches from the seeded init, real data root kept",
    "fabricated-init": "(d) init = seeded values arranged like W; honest training from it",
    "fabricated-init-fresh": "(d) init drawn from the attacker's RNG; honest training from it",
    "splice": "(e) first half of run A + second half of run B, B's indices kept",
    "splice-reindexed": "(e) splice with the indices rewritten to the committed order",
    "data-substitution-real": "(f) 10% labels changed, real data root committed",
    "data-substitution-committed": "(f) 10% labels changed, substituted data root committed",
    "data-substitution-one-label": "(f) one label changed, real data root committed",
    "stale-proof": "(g) run A's proof presented with run B's weights (published weights)",
    "single-jump": "(h) honest run whose last segment jumps to W",
    "tolerance-drift": "(i) honest run nudged toward W by 4.5% of each update (under the 5% tolerance)",
    "zero-compute": "no training: LR 1e-6, line to W, crafted momentum drives each replay",
    "zero-compute-torch-suffix": "zero-compute, plan claims a torch build no verifier has",
    "zero-compute-cuda": "zero-compute, plan claims a CUDA device",
    "momentum-jump": "honest run, last 5 segments carried to W by crafted momentum",
    "momentum-jump-cuda": "momentum-jump, plan claims a CUDA device",
    "lr-masked-jump": "one segment jumps to W under a committed LR spike that normalises it away",
    "compact-final-jump": "compact proof whose last segment jumps to W",
    "missing-checkpoint": "full proof missing checkpoint n-1; the last segment jumps to W",
    "ground-fiat-shamir": "20% trained islands, embedded Fiat-Shamir response ground to hit them",
    "victim-seed-continuation": "victim's trajectory (seed, nonce, states) continued and signed by the thief",
    "nan-final": "one final weight is NaN",
    "float16-final": "final checkpoint stored as float16",
    "extra-tensor": "an extra (signed) tensor in a middle checkpoint",
    "skip-batches": "5% of segments trained on other batches than committed",
}

__all__ = ["ATTACKS", "DESCRIPTIONS", "Forgery", "Victim", "load_victim"]


def run(name: str, victim: Victim, out: Any, key: Any, seed: int = 0, **options: Any) -> Forgery:
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; one of {', '.join(ATTACKS)}")
    return ATTACKS[name](victim, out, key, seed, **options)
