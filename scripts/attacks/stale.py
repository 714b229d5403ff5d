"""(g) Stale proof: an honest proof of run A presented for the weights of run B.

This attacks *published-weights* verification (``pol verify model.safetensors --proof``): the
proof is genuine and verifies on its own; the weights file next to it is another model. The
generator re-signs A's proof with the attacker's key (A's states and chain unchanged) and
writes B's final weights as safetensors. What must catch it: the weights file's digest is not
the final-weights digest signed into the proof.
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
    plan = attacker_plan(victim.plan, sk)
    trained = 0
    if other_weights is None:
        from scripts.attacks.common import Trainer, task_data

        other_plan = attacker_plan(victim.plan, sk, seed=victim.plan.seed + 1 + seed)
        trainer = Trainer(other_plan, task_data(other_plan).train)
        b_states, _ = honest_states(other_plan, trainer)
        trained = trainer.steps_run
        other_weights = {k[len("model/"):]: v for k, v in b_states[-1].items() if k.startswith("model/")}
    path = write(out, plan, [dict(s) for s in victim.states], victim.indices, sk)
    weights_path = Path(weights_out) if weights_out else Path(path).with_suffix("").with_suffix(".safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in other_weights.items()}, str(weights_path))
    return Forgery("stale-proof", Path(path), {"weights_match"}, other_weights, trained_steps=trained,
                   extra_files={"weights": weights_path},
                   info={"weights_digest": weights_digest(other_weights).hex(),
                         "proof_final_digest": weights_digest(victim.weights).hex()})


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
