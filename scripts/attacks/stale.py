"""(g) Stale proof: an honest proof of run A presented for the weights of run B.

This attacks *published-weights* verification (``pol verify model.safetensors --proof``): the
proof is genuine and verifies on its own; the weights file next to it is another model. The
attacker trains its own honest run A (a trajectory is bound to the key that planned it, so it
cannot re-sign the victim's) and publishes it next to the victim's weights B. What must catch it:
the weights file's digest is not the final-weights digest signed into the proof.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pol.hashing import weights_digest
from scripts.attacks.common import Forgery, Victim, as_key, attacker_plan, write
from scripts.attacks.splice import honest_states


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, other_weights: dict | None = None,
          weights_out: str | os.PathLike[str] | None = None) -> Forgery:
    from safetensors.numpy import save_file

    sk = as_key(key)
    if victim.states is None or victim.indices is None:
        raise ValueError("the stale-proof attack needs a full victim proof")
    from scripts.attacks.common import Trainer, task_data

    plan = attacker_plan(victim.plan, sk, seed=victim.plan.seed + 1 + seed)
    trainer = Trainer(plan, task_data(plan).train)
    states, indices = honest_states(plan, trainer)
    other_weights = dict(victim.weights) if other_weights is None else other_weights
    path = write(out, plan, states, indices, sk, trainer.step_digests)
    weights_path = Path(weights_out) if weights_out else Path(path).with_suffix("").with_suffix(".safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in other_weights.items()}, str(weights_path))
    own = {k[len("model/"):]: v for k, v in states[-1].items() if k.startswith("model/")}
    return Forgery("stale-proof", Path(path), {"weights_match"}, other_weights, trained_steps=trainer.steps_run,
                   extra_files={"weights": weights_path},
                   info={"weights_digest": weights_digest(other_weights).hex(),
                         "proof_final_digest": weights_digest(own).hex()})


def check_published(proof: str | os.PathLike[str], weights: str | os.PathLike[str], public_key,
                    options=None) -> tuple[bool, set[str], str]:
    """(accepted, failed check names, how it was judged): the published-weights verifier if it
    exists in this build, else the digest comparison it must perform."""
    try:
        from verifier.published import verify_published  # type: ignore[import-not-found]
    except ImportError:
        verify_published = None
    if verify_published is not None:
        report = verify_published(weights, proof, public_key=public_key, options=options)
        return report.verdict == "verified", {c.name for c in report.failed}, "verifier.published.verify_published"
    from safetensors.numpy import load_file

    from pol.proof_file import ProofReader

    published = load_file(str(weights))
    with ProofReader(proof) as r:
        signed = r.final["final_weights_digest"] if r.final else b""
    same = weights_digest(published) == signed
    return same, set() if same else {"weights_match"}, "digest comparison (verifier.published not built yet)"
