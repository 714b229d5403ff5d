"""What each access level exposes to a party that does not hold the training data.

* ``weights`` — the final weights (what publishing the model reveals anyway);
* ``full_proof`` — every checkpoint stored in a full proof;
* ``compact_challenged`` — a compact proof (checkpoint 0, which the public seed rebuilds,
  anchors if any, the final weights) plus what the interactive challenge gives the verifier:
  the start state of every challenged segment (the prover's response) and its end state (the
  verifier's own replay of the segment), and the samples of the replayed batches, which the
  verifier must hold to replay them (``disclosed``);
* ``commitments_only`` — no weights at all (handled in :mod:`scripts.privacy.mia`).

The challenge / response flow runs through the ``pol`` command line in-process
(``pol challenge``, ``pol respond``, ``pol verify --response --challenge``), so the view is the
one a real verification produces.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scripts.privacy.data import DATA_SPEC
from scripts.privacy.runs import MODEL_SPEC, Weights

ACCESS_LEVELS = ("weights", "full_proof", "compact_challenged", "commitments_only")


@dataclass(frozen=True)
class View:
    access: str
    checkpoints: dict[int, Weights]                 # checkpoint index -> model weights
    disclosed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # dataset indices
    segments: tuple[int, ...] = ()                   # challenged segments (compact_challenged)

    @property
    def last(self) -> int:
        return max(self.checkpoints)


def _weights(state: dict[str, np.ndarray]) -> Weights:
    from pol.state import model_weights

    return {k: np.array(v) for k, v in model_weights(state).items()}


def final_weights_view(proof: str | os.PathLike[str]) -> View:
    from pol.proof_file import ProofReader

    with ProofReader(proof, model_spec=MODEL_SPEC) as reader:
        last = reader.num_checkpoints - 1
        return View("weights", {last: _weights(reader.checkpoint_state(last))})


def full_proof_view(proof: str | os.PathLike[str]) -> View:
    from pol.proof_file import ProofReader

    with ProofReader(proof, model_spec=MODEL_SPEC) as reader:
        if len(reader.stored_checkpoints) != reader.num_checkpoints:
            raise ValueError(f"{proof} is not a full proof (stores {len(reader.stored_checkpoints)} "
                             f"of {reader.num_checkpoints} checkpoints)")
        return View("full_proof", {i: _weights(reader.checkpoint_state(i)) for i in reader.stored_checkpoints})


def run_pol(args: list[str]) -> int:
    """``pol ARGS`` in this process, its exit code; what it prints is kept back (our stdout carries
    the JSON document) and shown on stderr when it fails."""
    from pol.cli import main

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if code != 0:
        print(f"pol {' '.join(map(str, args[:2]))} exited {code}:\n{out.getvalue()[-2000:]}", file=sys.stderr)
    return code


def challenge_and_respond(compact: str | os.PathLike[str], workdir: str | os.PathLike[str], *, segments: int | None,
                          seed: int, top_updates: int = 0) -> tuple[Path, Path]:
    """Verifier: ``pol challenge``; prover: ``pol respond``. Returns (challenge, response) paths.

    ``top_updates``: 0 (the private choice measured here) challenges the uniform draw plus the last
    segment; ``pol challenge``'s default (2) also challenges the whole stretch after the last anchor
    and the largest updates, which a single forged jump cannot escape but which shows the verifier
    more of the run (docs/PRIVACY.md)."""
    d = Path(workdir)
    challenge, response = d / f"{Path(compact).stem}.challenge.json", d / f"{Path(compact).stem}.response.h5"
    args = ["challenge", compact, "--out", challenge, "--seed", seed, "--model", MODEL_SPEC,
            "--top-updates", top_updates] + ([] if segments is None else ["--segments", segments])
    if (code := run_pol(args)) != 0:
        raise RuntimeError(f"pol challenge exited {code}")
    if (code := run_pol(["respond", compact, "--challenge", challenge, "--out", response, "--data", DATA_SPEC])) != 0:
        raise RuntimeError(f"pol respond exited {code}")
    return challenge, response


def verify_challenged(compact: str | os.PathLike[str], public_key: str | os.PathLike[str], challenge: Path,
                      response: Path) -> int:
    """``pol verify`` of the compact proof with the response to the verifier's own challenge."""
    return run_pol(["verify", compact, "--key", public_key, "--response", response, "--challenge", challenge,
                    "--data", DATA_SPEC])


def compact_challenged_view(compact: str | os.PathLike[str], challenge: Path, response: Path) -> View:
    """Stored checkpoints + challenged start states (response) + their replayed end states."""
    from pol.proof_file import ProofReader
    from pol.sampler import BatchSchedule
    from pol.tasks import load_data
    from verifier.challenge import read_challenge, read_response
    from verifier.replay import Replayer

    with ProofReader(compact, model_spec=MODEL_SPEC) as reader:
        plan = reader.plan
        seen = {i: _weights(reader.checkpoint_state(i)) for i in reader.stored_checkpoints}
        segments = sorted(int(s) for s in read_challenge(challenge)["segments"])
        starts = read_response(response, reader)[1]
        data = load_data(DATA_SPEC, plan.data.get("kwargs") or {})
        replayer = Replayer(plan, data.train, "cpu", MODEL_SPEC)
        schedule = BatchSchedule(plan.run_seed, int(plan.data["num_samples"]), plan.samples_per_step)
        disclosed = []
        for j in segments:
            start = starts[j] if j in starts else reader.checkpoint_state(j)
            a, b = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
            indices = schedule.block(a, b)
            disclosed.append(indices.ravel())
            seen[j] = _weights(start)
            seen[j + 1] = _weights(replayer.run(start, a, indices))
    return View("compact_challenged", seen, np.unique(np.concatenate(disclosed)) if disclosed else np.empty(0, np.int64),
                tuple(segments))

