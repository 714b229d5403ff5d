"""Judging one segment: find its start state, replay it, compare, measure progress.

A :class:`SegmentJudge` is built once per process (data loaded once, model and optimizer built
once) and judges segments by index, so the same code runs in-process or in worker processes.

Where a segment's start checkpoint is not stored (compact proofs), the start state comes
from a prover's response (checked against the committed state digest before use) or, failing
that, is regenerated here by exact replay from the nearest stored anchor, checking every
intermediate checkpoint digest on the way. The judge keeps the latest state it regenerated or
verified bitwise, so segments judged in ascending order continue from there rather than from
the anchor again (linear, not quadratic, within an anchor interval).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pol.errors import PlanError, short_reason
from pol.hashing import state_digest
from pol.proof_file import ProofReader
from pol.state import State
from pol.tasks import TaskData, load_data
from verifier.drift import error_toward_final
from verifier.progress import HeldOut, SegmentProgress, segment_progress
from verifier.replay import Replayer, first_difference, replay_digests
from verifier.scan import flat_weights
from verifier.tolerance import Comparison, Tolerance, compare_states


@dataclass(frozen=True)
class JudgeConfig:
    proof: str
    model_spec: str
    data_spec: str
    device: str
    mode: str
    tolerance: Tolerance
    progress_check: bool
    threads: int | None
    response: str | None = None
    loss_spec: str | None = None
    deterministic: bool = False
    env: tuple[tuple[str, str], ...] = ()        # environment the replay processes start with
    use_embedded_response: bool = False


@dataclass(frozen=True)
class SegmentOutcome:
    segment: int
    start_step: int
    stop_step: int
    passed: bool
    distance: float
    progress_ratio: float
    detail: str
    replayed_steps: int
    start_source: str
    progress: SegmentProgress | None = None
    seconds: float = 0.0
    toward_final: float = 0.0   # cosine between (recorded - replayed) and (final - replayed); see verifier.drift
    unit: str = "segment"       # or "step": a single challenged step (``segment`` then holds the step)


class SegmentJudge:
    def __init__(self, config: JudgeConfig, data: TaskData | None = None, reader: ProofReader | None = None):
        """``reader``: the proof already open in this process (not closed by :meth:`close`)."""
        import torch

        if config.threads is not None:
            torch.set_num_threads(max(1, config.threads))
        torch.use_deterministic_algorithms(config.deterministic)
        self.config = config
        self._owns_reader = reader is None
        self.reader = reader if reader is not None else ProofReader(config.proof, model_spec=config.model_spec)
        plan = self.reader.plan
        data = data or load_data(config.data_spec, plan.data.get("kwargs") or {})
        self.replayer = Replayer(plan, data.train, config.device, config.model_spec, config.loss_spec)
        self.heldout = HeldOut(data.heldout, plan.batch_size) if config.progress_check and data.heldout is not None else None
        self._final: np.ndarray | None = None
        self._latest: tuple[int, State] | None = None   # latest checkpoint regenerated or verified bitwise
        self.responses: dict[int, State] = {}        # checkpoint index -> start state from the prover
        self.step_responses: dict[int, State] = {}   # step t -> state after t steps, from the prover
        if config.response:
            from verifier.challenge import read_response

            _, self.responses, self.step_responses = read_response(config.response, self.reader)
        elif config.use_embedded_response and self.reader.has_embedded_response():
            from verifier.challenge import load_embedded_response

            self.responses, self.step_responses = load_embedded_response(self.reader)

    def close(self) -> None:
        if self._owns_reader:
            self.reader.close()

    # -- states -----------------------------------------------------------------------------
    def _state(self, i: int, start: bool = False) -> tuple[State | None, str]:
        """Checkpoint ``i`` if it is available without replay, checked against its digest.

        A replay can ``start`` only from a checkpoint stored with its optimizer state.
        """
        if self.reader.is_complete(i) or (not start and self.reader.has_checkpoint(i)):
            return self.reader.checkpoint_state(i), "stored"
        if i in self.responses:
            state = self.responses[i]
            if state_digest(state) != self.reader.state_digests[i]:
                raise _Mismatch(f"the response's checkpoint {i} does not match its committed digest")
            return state, "response"
        return None, ""

    def _regenerate(self, i: int) -> tuple[State, int]:
        """Replay from the nearest available earlier checkpoint up to checkpoint ``i`` (exact mode only)."""
        if self.config.mode != "exact":
            raise _Mismatch(f"checkpoint {i} is not stored and tolerance mode cannot regenerate it: "
                            "ask the prover for a response (pol challenge / pol respond)")
        anchor = max(a for a in range(i) if self.reader.is_complete(a) or a in self.responses)
        if self._latest is not None and anchor <= self._latest[0] <= i:
            anchor, state = self._latest  # already checked against its committed digest
        else:
            state, _ = self._state(anchor, start=True)
        assert state is not None
        try:
            return replay_forward(self.reader, self.replayer, anchor, state, i)
        except RegenerationError as exc:
            raise _Mismatch(str(exc)) from None

    # -- judging ----------------------------------------------------------------------------
    def judge(self, unit: "int | tuple[str, int]") -> SegmentOutcome:
        """Judge a segment (``j`` or ``("segment", j)``) or a single step (``("step", t)``)."""
        import time

        t0 = time.perf_counter()
        kind, j = unit if isinstance(unit, tuple) else ("segment", unit)
        if kind == "step":
            start, stop = j, j + 1
        else:
            steps = self.reader.checkpoint_steps
            start, stop = int(steps[j]), int(steps[j + 1])
        try:
            outcome = self._judge_step(j) if kind == "step" else self._judge(j, start, stop)
        except _Mismatch as exc:
            outcome = SegmentOutcome(j, start, stop, False, math.inf, 0.0, str(exc), 0, "")
        except (PlanError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            # a recorded state the model cannot even load (extra or misshapen tensors): a failed
            # replay, not an internal error (the checkpoints check names the layout problem)
            outcome = SegmentOutcome(j, start, stop, False, math.inf, 0.0,
                                     f"the recorded state cannot be replayed: {short_reason(exc)}", 0, "")
        return SegmentOutcome(**{**outcome.__dict__, "seconds": time.perf_counter() - t0})

    def _judge(self, j: int, start: int, stop: int) -> SegmentOutcome:
        replayed_steps = 0
        start_state, source = self._state(j, start=True)
        if start_state is None:
            start_state, replayed_steps = self._regenerate(j)
            source = "regenerated"
            self._latest = (j, start_state)
        indices = self.reader.indices(start, stop)
        replayed, step_digests = replay_digests(self.replayer, start_state, start, indices)
        replayed_steps += stop - start
        committed_steps = self.reader.step_state_digests
        if self.config.mode == "exact" and committed_steps is not None:
            first = first_difference(committed_steps[start + 1:stop + 1], step_digests)
            if first is not None:
                raise _Mismatch(f"step {start + first} does not reproduce the committed state after it "
                                f"(first differing step of the segment)")
        recorded, _ = self._state(j + 1)
        committed = self.reader.state_digests[j + 1]
        if recorded is None:
            if self.config.mode != "exact":
                raise _Mismatch(f"checkpoint {j + 1} is not stored; tolerance mode needs it from a response")
            same = state_digest(replayed) == committed
            result = Comparison(same, 0.0 if same else math.inf, 1.0 if same else 0.0,
                                "" if same else "replay does not reproduce the committed digest")
            recorded = replayed if same else None
        else:
            result = compare_states(self.config.mode, start_state, recorded, replayed, committed, self.config.tolerance)
        if self.config.mode == "exact" and result.passed:
            self._latest = (j + 1, replayed)  # bitwise equal to the committed checkpoint j+1
        toward = 0.0
        last = j + 1 == self.reader.num_checkpoints - 1  # ends at the final weights: nothing to measure
        if self.config.mode == "tolerance" and recorded is not None and not last:  # the drift check runs only there
            toward = error_toward_final(recorded, replayed, self.final_weights())
        progress = None
        if self.heldout is not None and recorded is not None:
            progress = segment_progress(self.replayer, self.heldout, j, start_state, recorded, indices)
        return SegmentOutcome(j, start, stop, result.passed, result.distance, result.progress, result.detail,
                              replayed_steps, source, progress, toward_final=toward)

    def _step_start(self, t: int) -> tuple[State, str, int]:
        """The state after ``t`` steps: a stored checkpoint, the prover's response (digest-checked),
        or regenerated here from the checkpoint before it (exact mode)."""
        committed = self.reader.step_state_digests
        assert committed is not None
        i, rem = divmod(t, self.reader.plan.every)
        if rem == 0 and i < self.reader.num_checkpoints:
            state, source = self._state(i, start=True)
            if state is not None:
                return state, source, 0
        if t in self.step_responses:
            state = self.step_responses[t]
            if state_digest(state) != committed[t]:
                raise _Mismatch(f"the response's state after step {t} does not match its committed digest")
            return state, "response", 0
        if self.config.mode != "exact":
            raise _Mismatch(f"the state after step {t} is not available in tolerance mode: ask the prover (pol challenge)")
        base, _ = self._state(i, start=True)
        replayed = 0
        if base is None:
            base, replayed = self._regenerate(i)
        lo = int(self.reader.checkpoint_steps[i])
        if t == lo:
            return base, "regenerated", replayed
        end, digests = replay_digests(self.replayer, base, lo, self.reader.indices(lo, t))
        first = first_difference(committed[lo + 1:t + 1], digests)
        if first is not None:
            raise _Mismatch(f"step {lo + first} does not reproduce the committed state after it "
                            "(found while regenerating a challenged step's start)")
        return end, "regenerated", replayed + t - lo

    def _judge_step(self, t: int) -> SegmentOutcome:
        if self.reader.step_state_digests is None:
            raise _Mismatch("this proof commits no per-step digests: single steps cannot be judged")
        start_state, source, replayed = self._step_start(t)
        end = self.replayer.run(start_state, t, self.reader.indices(t, t + 1))
        same = state_digest(end) == self.reader.step_state_digests[t + 1]
        detail = "" if same else f"step {t} does not reproduce the committed state after it"
        return SegmentOutcome(t, t, t + 1, same, 0.0 if same else math.inf, 1.0 if same else 0.0, detail,
                              replayed + 1, source, unit="step")

    def final_weights(self) -> np.ndarray | None:
        if self._final is None:
            last = self.reader.num_checkpoints - 1
            self._final = flat_weights(self.reader.checkpoint_state(last)) if self.reader.has_checkpoint(last) else np.zeros(0)
        return self._final if self._final.size else None


class _Mismatch(Exception):
    pass


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (inherited by processes spawned meanwhile)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RegenerationError(Exception):
    """Exact replay from an anchor did not reproduce a committed checkpoint digest."""


def replay_forward(reader: ProofReader, replayer: Replayer, anchor: int, state: State, target: int,
                   keep: set[int] | None = None, out: dict[int, State] | None = None) -> tuple[State, int]:
    """Replay checkpoint ``anchor`` forward to ``target``, checking every committed digest.

    States of the checkpoints in ``keep`` are stored into ``out`` on the way. Returns the
    target state and the number of steps replayed.
    """
    steps = reader.checkpoint_steps
    replayed = 0
    for c in range(anchor, target):
        lo, hi = int(steps[c]), int(steps[c + 1])
        state = replayer.run(state, lo, reader.indices(lo, hi))
        replayed += hi - lo
        if state_digest(state) != reader.state_digests[c + 1]:
            raise RegenerationError(f"replaying from checkpoint {anchor} does not reproduce the committed "
                                    f"digest of checkpoint {c + 1}")
        if keep is not None and out is not None and c + 1 in keep:
            out[c + 1] = state
    return state, replayed


# -- worker processes -------------------------------------------------------------------------
_WORKER: SegmentJudge | None = None


def _init_worker(config: JudgeConfig) -> None:
    import signal

    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops the workers
    _WORKER = SegmentJudge(config)


def _ready() -> bool:
    return _WORKER is not None


def _expected_initial_in_worker() -> State:
    assert _WORKER is not None
    from verifier.checks import expected_initial_state

    return expected_initial_state(_WORKER.reader, _WORKER.config.model_spec)


def _judge_in_worker(unit: "int | tuple[str, int]", tolerance: Tolerance) -> SegmentOutcome:
    assert _WORKER is not None
    _WORKER.config = replace(_WORKER.config, tolerance=tolerance)
    return _WORKER.judge(unit)


class ReplayPool:
    """Judges segments in this process plus spawned worker processes.

    Start it early (``verify()`` does so before the integrity checks): each worker imports torch,
    opens the proof and loads the data once, which takes seconds; that start-up then overlaps
    with the checks the parent runs meanwhile. The parent judges segments too, from the same
    queue, so ``workers=N`` uses N processes and one of them never waits for start-up. When the
    recorded environment needs variables torch reads at start-up (``config.env``, e.g. the CPU
    kernel family), every replay runs in spawned processes started with them, never in the parent.
    """

    def __init__(self, config: JudgeConfig, workers: int):
        self.config = config
        self._pool: Any = None
        self.in_parent = not config.env
        self._spawned = workers - 1 if self.in_parent else max(1, workers)
        if self._spawned > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with _environment(dict(config.env)):
                self._pool = ProcessPoolExecutor(max_workers=self._spawned, initializer=_init_worker, initargs=(config,),
                                                 mp_context=multiprocessing.get_context("spawn"))
                for _ in range(self._spawned):
                    self._pool.submit(_ready)  # the executor spawns processes on submit: start them now
        self.workers = workers

    def expected_initial_state(self, reader: ProofReader) -> State:
        """The initial state the run seed builds, computed where replay runs (the seeded init depends on
        the CPU kernel family too, so it is built in the reproduced environment when that is a worker)."""
        from verifier.checks import expected_initial_state

        if self.in_parent:
            return expected_initial_state(reader, self.config.model_spec)
        return self._pool.submit(_expected_initial_in_worker).result()

    def judge(self, segments: list[Any], tolerance: Tolerance, advance: Any = None,
              data: TaskData | None = None, reader: ProofReader | None = None) -> list[SegmentOutcome]:
        """Judge units (segment numbers, or ``("segment", j)`` / ``("step", t)``), in the given order."""
        from collections import deque

        config = replace(self.config, tolerance=tolerance)
        pending = deque(segments)
        results: dict[Any, SegmentOutcome] = {}
        in_flight: dict[Any, Any] = {}

        def top_up(block: bool = False) -> None:
            if block and in_flight:
                from concurrent.futures import FIRST_COMPLETED, wait

                wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in [f for f in in_flight if f.done()]:
                results[in_flight.pop(fut)] = fut.result()
                if advance:
                    advance(1)
            while self._pool is not None and pending and len(in_flight) < 2 * self._spawned:
                j = pending.popleft()  # everyone takes in ascending order: decoding continues forward
                in_flight[self._pool.submit(_judge_in_worker, j, tolerance)] = j

        top_up()
        if self.in_parent:
            judge = SegmentJudge(config, data, reader)
            try:
                while pending:
                    j = pending.popleft()
                    results[j] = judge.judge(j)
                    if advance:
                        advance(1)
                    top_up()
            finally:
                judge.close()
        while pending or in_flight:
            top_up(block=True)
        return [results[j] for j in segments]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ReplayPool":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._pool is not None:  # stopping (an error, Ctrl-C): do not wait for replays
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.close()
