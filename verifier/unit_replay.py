"""Exact replay of one step or one segment of a proof, with the digests on both sides.

The quorum (re-checking a vote's evidence), the dispute (the verifier's side of a bisection) and
the referee of a fraud proof all ask the same question: *starting from the committed state,
does replaying these steps give the committed digest?* :class:`ExactUnitReplayer` answers it on
the recorded stack (exact mode only: a digest comparison means nothing across stacks)::

    with ProofReader("run.pol.h5") as reader:
        units = ExactUnitReplayer(reader)
        result = units.replay(34, 35)          # step 34 alone
        result.reproduced, result.committed.hex(), result.replayed.hex()

A start state that is not stored whole is regenerated from the nearest stored checkpoint,
checking every committed digest on the way (the per-step digests of format 3, else the
checkpoint digests); a mismatch there raises :class:`EarlierMismatch`, naming the first step
that does not reproduce.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pol.errors import InputError
from pol.hashing import state_digest
from pol.proof_file import ProofReader
from pol.replay import Replayer, first_difference, replay_digests
from pol.state import State


class EarlierMismatch(Exception):
    """Regenerating a start state hit a step that does not reproduce its committed digest."""

    def __init__(self, step: int, what: str):
        super().__init__(f"step {step} does not reproduce the committed {what} (found while regenerating a start state)")
        self.step = step


@dataclass(frozen=True)
class UnitReplay:
    """Steps ``start_step .. stop_step - 1`` replayed from the committed state after ``start_step`` steps."""

    start_step: int
    stop_step: int
    start_digest: bytes              # committed digest of the start state (the replay started from it)
    committed: bytes                 # committed digest of the end state
    replayed: bytes                  # digest of the replayed end state
    first_bad_step: int | None       # first step whose result differs from its committed per-step digest
    replayed_digests: tuple[bytes, ...]  # digest after every replayed step
    replayed_steps: int              # steps run, regeneration of the start state included
    seconds: float

    @property
    def reproduced(self) -> bool:
        return self.first_bad_step is None and self.committed == self.replayed


def committed_digest_after(reader: ProofReader, t: int) -> bytes | None:
    """The committed digest of the state after ``t`` steps: a per-step digest (format 3), a
    checkpoint's digest when ``t`` is a checkpoint step, else None (nothing commits it)."""
    per_step = reader.step_state_digests
    if per_step is not None and 0 <= t < len(per_step):
        return per_step[t]
    steps = [int(s) for s in reader.checkpoint_steps]
    if t in steps:
        return reader.state_digests[steps.index(t)]
    return None


class ExactUnitReplayer:
    """Replays single steps and segments of one proof in exact mode, on the recorded stack.

    ``data``/``model``/``loss`` name user code for custom tasks (a proof never does); ``data_kwargs``
    overrides the plan's data arguments (e.g. a local path), as ``pol verify --data-kwargs`` does.
    """

    def __init__(self, reader: ProofReader, *, data: str | None = None, model: str | None = None,
                 loss: str | None = None, device: str = "auto", data_kwargs: dict | None = None):
        from pol.envinfo import apply_in_process
        from pol.tasks import load_data, resolve_spec
        from verifier.api import VerifyOptions, _auto_device, decide_mode

        self.reader = reader
        plan = reader.plan
        model_spec = resolve_spec(plan.model.get("spec"), model, "model")
        reader.model_spec = model_spec
        self.device = _auto_device(reader, device)
        _, rep = decide_mode(reader, self.device, VerifyOptions(mode="exact"))
        if rep.needs_subprocess:
            raise InputError("exact replay needs " + ", ".join(f"{k}={v}" for k, v in rep.env.items()) +
                             " set before starting this process (the recorded CPU kernels)")
        apply_in_process(rep)
        kwargs = data_kwargs if data_kwargs is not None else (plan.data.get("kwargs") or {})
        dataset = load_data(resolve_spec(plan.data.get("spec"), data, "data"), kwargs)
        self.replayer = Replayer(plan, dataset.train, self.device, model_spec, loss)
        self._steps = [int(s) for s in reader.checkpoint_steps]

    # -- start states ---------------------------------------------------------------------
    def state_after(self, t: int) -> tuple[State, int]:
        """The committed state after ``t`` steps and the steps replayed to get it.

        Stored whole when ``t`` is the step of a complete checkpoint; else replayed from the last
        complete checkpoint before it, every committed digest on the way checked.
        """
        reader = self.reader
        if not 0 <= t <= reader.num_recorded_steps:
            raise InputError(f"step {t} is outside the {reader.num_recorded_steps} recorded steps")
        anchors = [i for i in reader.stored_checkpoints if reader.is_complete(i) and self._steps[i] <= t]
        if not anchors:
            raise InputError(f"no stored checkpoint at or before step {t} to replay from")
        anchor = max(anchors)
        a = self._steps[anchor]
        state = {k: v.copy() for k, v in reader.checkpoint_state(anchor).items()}
        if state_digest(state) != reader.state_digests[anchor]:
            raise EarlierMismatch(a, "digest of its stored checkpoint")
        if t == a:
            return state, 0
        end, digests = replay_digests(self.replayer, state, a, reader.indices(a, t))
        self._check_trajectory(a, digests)
        return end, t - a

    def _check_trajectory(self, start: int, digests: list[bytes]) -> None:
        """``digests[i]`` is the replayed state after ``start + 1 + i`` steps: compare with every commitment."""
        for i, got in enumerate(digests):
            t = start + 1 + i
            committed = committed_digest_after(self.reader, t)
            if committed is not None and committed != got:
                raise EarlierMismatch(t - 1, f"state after step {t - 1}")

    # -- what a dispute needs (verifier.dispute.DisputeReplayer) -----------------------------
    @property
    def signer_public_key(self) -> bytes:
        return bytes(self.reader.signer_public_key)

    @property
    def per_step_digests(self) -> list[bytes] | None:
        return self.reader.step_state_digests

    def committed_after(self, t: int) -> bytes | None:
        return committed_digest_after(self.reader, t)

    def replay_steps(self, state: State, start: int, stop: int) -> tuple[State, list[bytes]]:
        """Replay ``start .. stop-1`` from ``state``: (end state, digest after every step)."""
        return replay_digests(self.replayer, state, start, self.reader.indices(start, stop))

    # -- units ------------------------------------------------------------------------------
    def replay_from(self, state: State, start: int, stop: int, start_digest: bytes,
                    committed_end: bytes, regenerated: int = 0) -> UnitReplay:
        """Replay ``start .. stop-1`` from a given ``state`` (already checked by the caller)."""
        t0 = time.perf_counter()
        _, digests = replay_digests(self.replayer, state, start, self.reader.indices(start, stop))
        first = None
        per_step = self.reader.step_state_digests
        if per_step is not None:
            diff = first_difference(per_step[start + 1:stop + 1], digests)
            first = None if diff is None else start + diff
        elif digests[-1] != committed_end:
            first = start if stop == start + 1 else None
        return UnitReplay(start, stop, start_digest, committed_end, digests[-1], first, tuple(digests),
                          regenerated + stop - start, time.perf_counter() - t0)

    def replay(self, start: int, stop: int) -> UnitReplay:
        """Replay steps ``start .. stop-1`` from the committed state after ``start`` steps.

        The end must be committed (a checkpoint step, or any step in a proof with per-step
        digests). Raises :class:`EarlierMismatch` when the start state cannot be regenerated.
        """
        if not 0 <= start < stop <= self.reader.num_recorded_steps:
            raise InputError(f"steps {start}..{stop} are not a range of the {self.reader.num_recorded_steps} recorded")
        committed_end = committed_digest_after(self.reader, stop)
        start_digest = committed_digest_after(self.reader, start)
        if committed_end is None or start_digest is None:
            raise InputError(f"the proof commits no digest after step {stop if committed_end is None else start}: "
                             "replay whole segments, or dispute the step (pol dispute)")
        state, regenerated = self.state_after(start)
        return self.replay_from(state, start, stop, start_digest, committed_end, regenerated)

    def segment_steps(self, segment: int) -> tuple[int, int]:
        if not 0 <= segment < self.reader.num_checkpoints - 1:
            raise InputError(f"segment {segment} is not in the proof ({self.reader.num_checkpoints - 1} segments)")
        return self._steps[segment], self._steps[segment + 1]
