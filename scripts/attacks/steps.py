"""The forgeries seen one step at a time: which steps each forges, and how a forger answers.

A proof of format 3 commits the state digest ``d[t]`` after every step. A single-step challenge
of step ``t`` asks the prover for the state after ``t`` steps (unless it is a checkpoint stored
whole); the verifier checks it against ``d[t]``, replays one step and compares with ``d[t+1]``.
Step ``t`` is **forged** when that check fails whatever the forger answers: it holds no state
with digest ``d[t]`` (the generators in :mod:`scripts.attacks` commit a fabricated digest where
they did not train: :func:`scripts.attacks.common.write`), or one honest step from it does not
give ``d[t+1]``.

* :func:`derived_forged_steps` says which steps each generator forges, from what it reports
  (interpolation forges every step; a jump segment its k steps; a data substitution the steps
  whose batch holds a changed sample; ...);
* :func:`forger_answer` answers a challenge from what the forger holds
  (:class:`scripts.attacks.common.Holdings`: the segments it trained and the states it wrote):
  a state only where its digest is the committed one; with ``fill``, its best state elsewhere too
  (the verifier's digest check then rejects it);
* :func:`scan_forged_steps` finds the forged steps by judging every step with the verifier's own
  single-step judge and the forger's answers: it checks the derivation (a full replay; slow).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pol.hashing import state_digest
from pol.proof_file import ProofReader
from pol.state import State
from scripts.attacks.common import Forgery, HeldSegment, Holdings

# No step trained under the committed plan (victim-seed-continuation: the run seed derives from the
# signer's key, so every copied step's seeded RNG state differs under the thief's key).
EVERY_STEP = ("interpolation", "adversarial-", "splice", "victim-seed-continuation")


def derived_forged_steps(forgery: Forgery, reader: ProofReader) -> set[int] | None:
    """The steps this forgery forges, derived from its generator (None: not derived)."""
    plan, info, name = reader.plan, forgery.info, forgery.attack
    n, total = reader.num_checkpoints - 1, plan.num_steps

    def segments(js: Iterable[int]) -> set[int]:
        return {t for j in js for t in range(plan.checkpoint_step(j), plan.checkpoint_step(j + 1))}

    if name.startswith(EVERY_STEP):
        return set(range(total))
    if name.startswith("zero-compute"):  # segment 0 is trained, then checkpoint 1 gets crafted momentum
        return set(range(plan.checkpoint_step(1) - 1, total))
    if name.startswith("momentum-jump"):  # the same from the first crafted checkpoint on
        first = info["forged_segments"][0] + 1
        return {plan.checkpoint_step(first) - 1} | segments(range(first, n))
    if name == "blindfold-top-q":
        return segments(set(range(n)) - set(info["genuine_segments"]))
    if name == "ground-fiat-shamir":
        return segments(set(range(n)) - set(info["trained_segments"]))
    if name in ("single-jump", "lr-masked-jump"):
        return segments([info["jump_segment"]])
    if name in ("compact-final-jump", "missing-checkpoint"):
        return segments([n - 1])
    if name in ("spread-thin", "spread-thin-segments", "single-forged-step"):  # nudged results (attacks/nudge.py)
        return set(info["forged_steps"])
    if name == "skip-batches":  # every step of a skipped segment ran another step's batch
        return segments(info["skipped_segments"])
    if name == "tolerance-drift":  # each checkpoint is nudged after its segment's last step
        return {plan.checkpoint_step(j + 1) - 1 for j in range(n)}
    if name.startswith("data-substitution"):
        changed = np.asarray(info["changed_indices"])
        indices = reader.indices()
        return {t for t in range(total) if np.isin(indices[t], changed).any()}
    if name in ("nan-final", "float16-final"):
        return {total - 1}
    if name == "extra-tensor":  # the step into the odd checkpoint, and the step out of it
        step = plan.checkpoint_step(info["checkpoint"])
        return {step - 1, step}
    if name.startswith("fabricated-init") or name == "stale-proof":
        return set()  # honest steps from a state the forger chose: caught by other checks
    return None


def caught_without_sampling(forgery: Forgery) -> bool:
    """Caught by a check that reads the whole proof (or refused on its environment claim)."""
    return bool(forgery.expected_checks - {"replay"}) or forgery.expect_refusal_in_auto_mode


@dataclass
class Answer:
    """States answering a challenge, by step; ``missing``: steps with no state matching the commitment."""

    states: dict[int, State] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    steps_replayed: int = 0
    seconds: float = 0.0


class _Replayers:
    """One replayer per data set (the model is built once); each run takes the segment's plan."""

    def __init__(self) -> None:
        self._by_data: dict[int, Any] = {}
        self.steps = 0

    def run(self, plan: Any, dataset: Any, start: State, start_step: int, indices: np.ndarray,
            keep: dict[int, State]) -> State:
        from verifier.replay import Replayer

        replayer = self._by_data.get(id(dataset))
        if replayer is None:
            replayer = self._by_data[id(dataset)] = Replayer(plan, dataset, "cpu", plan.model["spec"])
        replayer.plan = plan
        self.steps += len(indices)
        end = replayer.run(start, start_step, indices, keep.__setitem__)
        keep[start_step + len(indices)] = end
        return end


def _covering(held: Holdings, t: int) -> list[HeldSegment]:
    """Held segments that pass through the state after ``t`` steps, the most recent first."""
    return [s for s in reversed(held.segments) if s.start_step <= t <= s.start_step + len(s.indices)]


def forger_answer(held: Holdings, reader: ProofReader, wanted: Iterable[int], *, fill: bool = False) -> Answer:
    """The forger's states after each ``wanted`` step: a state it wrote, or one it reaches by replaying
    a segment it trained, whose digest is the committed one. Steps with none are ``missing``; with
    ``fill`` the forger still sends the state it has there (one of those, or an honest replay of the
    committed data from the stored checkpoint before it)."""
    started = time.perf_counter()
    committed = reader.step_state_digests
    if committed is None:
        raise ValueError("the forgery commits no per-step digests")
    wanted = sorted(set(wanted))
    replayers = _Replayers()
    reached: dict[int, dict[int, State]] = {}  # id(segment) -> states it was replayed to

    def along(seg: HeldSegment) -> dict[int, State]:
        if id(seg) not in reached:  # once per segment, up to the last wanted step it covers
            upto = max(t for t in wanted if seg.start_step <= t <= seg.start_step + len(seg.indices))
            states = reached[id(seg)] = {seg.start_step: seg.start}
            if upto > seg.start_step:
                replayers.run(seg.plan, seg.dataset, seg.start, seg.start_step,
                              seg.indices[:upto - seg.start_step], states)
        return reached[id(seg)]

    answer = Answer()
    for t in wanted:
        candidates = ([held.checkpoints[t]] if t in held.checkpoints else []) + \
            [along(seg)[t] for seg in _covering(held, t)]
        match = next((s for s in candidates if state_digest(s) == committed[t]), None)
        if match is None:
            answer.missing.append(t)
            if fill:
                answer.states[t] = candidates[0] if candidates else _replayed_from_stored(reader, t, replayers)
        else:
            answer.states[t] = match
    answer.steps_replayed, answer.seconds = replayers.steps, time.perf_counter() - started
    return answer


def _replayed_from_stored(reader: ProofReader, t: int, replayers: _Replayers) -> State:
    """An honest replay of the committed data from the last checkpoint stored whole before ``t``."""
    plan = reader.plan
    anchor = max(i for i in reader.stored_checkpoints if reader.is_complete(i) and plan.checkpoint_step(i) <= t)
    a = plan.checkpoint_step(anchor)
    state = reader.checkpoint_state(anchor)
    if t == a:
        return state
    return replayers.run(plan, committed_data(plan), state, a, reader.indices(a, t), {})


_DATA: dict[str, Any] = {}


def committed_data(plan: Any) -> Any:
    """The task's real training set (loaded once per process)."""
    from scripts.attacks.common import task_data

    key = repr((plan.data.get("spec"), plan.data.get("kwargs")))
    if key not in _DATA:
        _DATA[key] = task_data(plan).train
    return _DATA[key]


def scan_forged_steps(path: Any, held: Holdings) -> set[int]:
    """Every step judged by the verifier's single-step judge, with the forger's answers (``fill``):
    the steps whose judgement fails. Replays the whole run twice (the forger's and the verifier's)."""
    from pol.tasks import resolve_spec
    from verifier.segments import JudgeConfig, SegmentJudge
    from verifier.tolerance import Tolerance

    forged: set[int] = set()
    with ProofReader(path) as reader:
        plan = reader.plan
        spec = resolve_spec(plan.model.get("spec"), None, "model")
        data_spec = resolve_spec(plan.data.get("spec"), None, "data")
        judge = SegmentJudge(JudgeConfig(str(path), spec, data_spec, "cpu", "exact", Tolerance(), False, 1),
                             reader=reader)
        try:
            for j in range(reader.num_checkpoints - 1):
                s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
                judge.step_responses = forger_answer(held, reader, range(s0, s1), fill=True).states
                forged.update(t for t in range(s0, s1) if not judge.judge(("step", t)).passed)
        finally:
            judge.close()
    return forged
