"""Security benchmark, single-step flow (issue 15): interactive step challenges against thin forgeries.

For honest runs and the chosen forgeries of :mod:`scripts.attacks` (by default the thin ones:
one substituted label, 10% of the steps, one step in 10% of the segments, one step mid-segment,
and four denser ones for contrast; ``--attacks all`` for every one), with the machinery of ``scripts/bench_security.py`` (the same
victims, generators and attacker key), each trial is one round of the interactive flow:

1. the verifier issues what ``pol challenge PROOF --confidence C --forged-fraction F
   --top-updates N`` issues (``verifier.challenge.compose_challenge``, with the verifier's own
   randomness): single steps as the unit, plus the targeted segments (``N = 0``: the last segment
   only);
2. the prover answers: an honest prover regenerates the start states from the stored checkpoints
   (``verifier.challenge.regenerate``, what ``pol respond`` runs); a forger answers from what it
   holds (:func:`scripts.attacks.steps.forger_answer`). A forger that holds no state matching a
   committed digest it is asked for **cannot answer**; that counts as detection (column "no
   answer"). The same challenge is also answered the other way: the forger sends the states it has
   anyway, and the verifier judges them (column "answers");
3. the verifier judges: ``verify(proof, response=R, challenge=C)`` with ``--confidence C
   --forged-fraction F``, the attacker's own key trusted (the question is the training).

Reported per attack: the forged fraction of *steps* (derived per generator,
:func:`scripts.attacks.steps.derived_forged_steps`, and checked on the first forgery by judging
every step, ``--no-scan`` to skip); the detection probability the report claims at the requested
F (``guarantee.reached``, "claim@F" in the header) and the same formula at the attack's own forged
fraction ("claim@f": a claim covers forgeries of at least F, and a thinner one is caught less
often); the rate predicted for the challenges actually issued ("predict": claim@f, or 1 when a
replayed segment holds a forged step); and the measured rate with its 95% Wilson interval
("caught": the forger cannot answer or the verifier rejects; "answers": the forger answers every
challenge with the states it has and the verifier rejects). Per setting: honest false rejections,
the verifier's compute (``verify_compute_fraction``: steps the verifier replays / steps trained)
and, separately, the honest prover's regeneration cost. ``--json`` prints one document::

    python scripts/bench_steps.py --quick
    python scripts/bench_steps.py --steps 2000 --trials 20 --json
    python scripts/bench_steps.py --attacks all --trials 5 --top-updates 2
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts._bench_common import bench_parser  # noqa: E402
from scripts.bench_security import bar, train_honest, trusted  # noqa: E402

# The thin forgeries issue 15 names (one substituted label, a 10% spread-thin forgery, a single forged
# step in the middle of a segment), the same 10% counted in segments, and dense ones for contrast.
THIN_ATTACKS = ("data-substitution-one-label", "spread-thin", "spread-thin-segments", "single-forged-step")
DEFAULT_ATTACKS = (*THIN_ATTACKS, "interpolation", "tolerance-drift", "single-jump", "skip-batches")
QUICK_ATTACKS = (*THIN_ATTACKS, "interpolation", "single-jump")


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a measured rate (how far ``hits`` of ``n`` trials pin it down)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


@dataclass(frozen=True)
class Policy:
    """What the verifier asks for: ``pol challenge --confidence C --forged-fraction F --top-updates N``."""

    confidence: float
    forged_fraction: float
    top_updates: int

    @property
    def label(self) -> str:
        return f"top-updates={self.top_updates}"


def issue_challenge(reader: Any, out: Path, policy: Policy, seed: int | None) -> dict[str, Any]:
    """Write the challenge ``pol challenge`` issues (``verifier.challenge.compose_challenge``, the
    command's own policy) for an open proof; returns it."""
    from verifier.challenge import compose_challenge, save_challenge

    doc, _ = compose_challenge(reader, confidence=policy.confidence, forged_fraction=policy.forged_fraction,
                               top_updates=policy.top_updates, seed=seed)
    save_challenge(doc, out)
    return doc


class _Counting:
    """A replayer that counts the steps it runs (the prover's regeneration cost)."""

    def __init__(self, replayer: Any):
        self.replayer, self.steps = replayer, 0

    def run(self, state: Any, start: int, indices: Any, on_step: Any = None) -> Any:
        self.steps += len(indices)
        return self.replayer.run(state, start, indices, on_step)


def honest_answer(reader: Any, wanted: list[int]) -> Any:
    """``pol respond``: regenerate the wanted states from the stored checkpoints, digest-checked."""
    from pol.tasks import resolve_spec
    from scripts.attacks.steps import Answer, committed_data
    from verifier.challenge import regenerate
    from verifier.replay import Replayer
    from verifier.segments import RegenerationError

    started = time.perf_counter()
    plan = reader.plan
    counting = _Counting(Replayer(plan, committed_data(plan), "cpu", resolve_spec(plan.model.get("spec"), None, "model")))
    try:
        states = regenerate(reader, counting, wanted)
        missing: list[int] = []
    except RegenerationError:
        states, missing = {}, list(wanted)
    return Answer(states, missing, counting.steps, time.perf_counter() - started)


def challenge_round(reader: Any, public_key: Any, policy: Policy, prover: Callable[[Any, list[int]], Any],
                    workdir: Path, seed: int | None, mode: str, forged: set[int] | None = None) -> dict[str, Any]:
    """One trial on an open proof: challenge, answer, judge. ``forged``: the forged steps (for the prediction)."""
    from pol.errors import InputError
    from verifier.api import VerifyOptions, verify_open
    from verifier.challenge import challenged_units, needed_checkpoints, needed_steps, write_response
    from verifier.sampling import detection_probability

    challenge, response = workdir / "challenge.json", workdir / "response.h5"
    doc = issue_challenge(reader, challenge, policy, seed)
    segments, steps = challenged_units(doc, reader)
    ckpts, step_list = needed_checkpoints(reader, segments), needed_steps(reader, steps)
    at = reader.checkpoint_steps
    wanted = sorted({int(at[i]) for i in ckpts} | set(step_list))
    answer = prover(reader, wanted)
    total = reader.plan.num_steps
    row: dict[str, Any] = {"steps": len(steps), "segments": len(segments), "no_answer": bool(answer.missing),
                           "prover_steps": answer.steps_replayed, "prover_seconds": answer.seconds}
    if forged is not None:  # the report's formula at this forgery's own fraction of forged steps, and with the
        # segments this challenge replays whole (a forged step inside one is caught for certain)
        in_segments = {t for j in segments for t in range(int(at[j]), int(at[j + 1]))}
        row["claimed_at_f"] = detection_probability(total, len(steps), len(forged) / total)
        row["predicted"] = 1.0 if forged & in_segments else row["claimed_at_f"]
    if not answer.states.keys() >= set(wanted):  # an honest prover that cannot regenerate: nothing to judge
        row.update(verdict="no answer", failed=[], verify_seconds=0.0)
        return row
    write_response(response, reader, doc, {i: answer.states[int(at[i])] for i in ckpts},
                   {t: answer.states[t] for t in step_list})
    options = VerifyOptions(confidence=policy.confidence, forged_fraction=policy.forged_fraction,
                            top_updates=policy.top_updates, mode=mode)
    started = time.perf_counter()
    try:
        report = verify_open(reader, public_key=public_key, options=options, response=str(response),
                             challenge=str(challenge))
        row.update(verdict=report.verdict, failed=sorted(c.name for c in report.failed),
                   replayed_steps=int(report.info.get("replayed_steps", 0)),
                   claimed=report.info.get("guarantee", {}).get("reached"),
                   step_detection_probability=report.info.get("step_detection_probability"))
    except InputError as exc:
        row.update(verdict="refused", failed=[], refused=str(exc))
    row["verify_seconds"] = time.perf_counter() - started
    return row


def _published_round(forgery: Any, public_key: Any, policy: Policy, steps: int, seed: int | None,
                     mode: str) -> dict[str, Any]:
    """A forgery judged as published weights (stale-proof): ``pol verify WEIGHTS --proof P --steps N``,
    the verifier regenerating the start states itself."""
    from scripts.attacks.stale import check_published
    from verifier.api import VerifyOptions

    options = VerifyOptions(segments=0, steps=steps, top_updates=policy.top_updates, seed=seed, mode=mode)
    accepted, failed, _ = check_published(forgery.path, forgery.extra_files["weights"], public_key, options)
    return {"steps": steps, "segments": 0, "no_answer": False, "verdict": "verified" if accepted else "rejected",
            "failed": sorted(failed), "predicted": 1.0, "published_weights": True}


def _honest(policy: Policy, honest: list[Any], public_key: Any, trials: int, workdir: Path,
            seed: int | None, mode: str) -> dict[str, Any]:
    rows = []
    with bar(f"honest, {policy.label}", trials) as advance:
        for t in range(trials):
            rows.append(challenge_round(honest[t % len(honest)], public_key, policy, honest_answer, workdir,
                                        None if seed is None else seed + t, mode))
            advance(1)
    return _summary(rows, honest=True)


def _summary(rows: list[dict[str, Any]], honest: bool = False) -> dict[str, Any]:
    n = max(len(rows), 1)
    judged = [r for r in rows if "replayed_steps" in r]
    out: dict[str, Any] = {"trials": len(rows)}
    if honest:
        out["false_rejections"] = sum(r["verdict"] != "verified" for r in rows)
        out["verdicts"] = dict(Counter(r["verdict"] for r in rows))
    else:
        caught = sum(r["no_answer"] or r["verdict"] != "verified" for r in rows)
        out["caught_no_answer"] = caught / n
        out["caught_no_answer_95"] = [round(x, 4) for x in wilson_interval(caught, len(rows))]
        out["no_answer_rate"] = sum(r["no_answer"] for r in rows) / n
        out["caught_answering"] = sum(r["verdict"] != "verified" for r in rows) / n
        out["refused_rate"] = sum(r["verdict"] == "refused" for r in rows) / n
        out["failing_checks"] = dict(sorted(Counter(c for r in rows for c in r["failed"]).items()))
        predicted = [r["predicted"] for r in rows if r.get("predicted") is not None]
        out["predicted"] = sum(predicted) / len(predicted) if predicted else None
        claims = [r["claimed_at_f"] for r in rows if r.get("claimed_at_f") is not None]
        out["claimed_at_f"] = sum(claims) / len(claims) if claims else None
    if judged:
        out["claimed_at_F"] = judged[0]["claimed"]
        out["step_detection_probability"] = judged[0]["step_detection_probability"]
        out["steps_challenged"] = judged[0]["steps"]
        out["segments_challenged"] = sum(r["segments"] for r in judged) / len(judged)
        out["verifier_steps"] = sum(r["replayed_steps"] for r in judged) / len(judged)
        out["verify_seconds"] = round(sum(r["verify_seconds"] for r in judged) / len(judged), 3)
    answered = [r for r in rows if "prover_steps" in r]
    if answered:
        out["prover_steps"] = sum(r["prover_steps"] for r in answered) / len(answered)
        out["prover_seconds"] = round(sum(r["prover_seconds"] for r in answered) / len(answered), 4)
    return out


def _attack(name: str, policies: list[Policy], honest: list[Path], attacker: Any, trials: int, runs: int,
            workdir: Path, seed: int | None, mode: str, scan: bool,
            certain_trials: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from pol.proof_file import ProofReader
    from scripts.attacks import ATTACKS, load_victim
    from scripts.attacks.common import holdings
    from scripts.attacks.steps import caught_without_sampling, derived_forged_steps, forger_answer, scan_forged_steps

    key = trusted(bytes(attacker.verify_key))
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        forgeries: list[tuple[Any, Any, Any, set[int] | None]] = []
        generate_s, r = 0.0, 0
        while r < min(runs, trials):  # a forgery caught without sampling gets ``certain_trials`` trials
            started = time.perf_counter()
            with holdings() as held:
                forgery = ATTACKS[name](load_victim(honest[r % len(honest)]), workdir / f"{name}-{r}.pol.h5", attacker,
                                        7 + 31 * r)
            generate_s += time.perf_counter() - started
            stack.callback(lambda f=forgery: [Path(p).unlink(missing_ok=True) for p in [f.path, *f.extra_files.values()]])
            reader = stack.enter_context(ProofReader(forgery.path))
            forgeries.append((forgery, held, reader, derived_forged_steps(forgery, reader)))
            if r == 0 and caught_without_sampling(forgery):
                trials = min(trials, certain_trials)
            r += 1
        forgery0, held0, reader0, derived0 = forgeries[0]
        total = reader0.plan.num_steps
        steps_doc: dict[str, Any] = {
            "attack": forgery0.attack, "caught_without_sampling": caught_without_sampling(forgery0),
            "expected_checks": sorted(forgery0.expected_checks),
            "forged_step_fraction": (None if any(f[3] is None for f in forgeries) else
                                     sum(len(f[3]) for f in forgeries) / len(forgeries) / total),
            "generate_seconds": round(generate_s / len(forgeries), 2), "forgeries": len(forgeries),
        }
        if scan:
            scanned = scan_forged_steps(forgery0.path, held0)
            steps_doc.update(scanned_fraction=len(scanned) / total,
                             derivation_matches_scan=None if derived0 is None else derived0 == scanned)
        for policy in policies:
            rows = []
            with bar(f"{name}, {policy.label}", trials) as advance:
                for t in range(trials):
                    forgery, held, reader, derived = forgeries[t % len(forgeries)]
                    s = None if seed is None else seed + 10_000 + t
                    if "weights" in forgery.extra_files:
                        rows.append(_published_round(forgery, key, policy, _steps_for(reader, policy), s, mode))
                    else:
                        def prover(reader: Any, wanted: list[int], held: Any = held) -> Any:
                            return forger_answer(held, reader, wanted, fill=True)  # ``missing``: what it could not match

                        row = challenge_round(reader, key, policy, prover, workdir, s, mode, derived)
                        if caught_without_sampling(forgery):
                            row["predicted"] = 1.0
                        rows.append(row)
                    advance(1)
            results[policy.label] = _summary(rows)
    return steps_doc, results


def _steps_for(reader: Any, policy: Policy) -> int:
    from verifier.sampling import samples_for

    return samples_for(reader.plan.num_steps, policy.confidence, policy.forged_fraction)


def run(trials: int, steps: int, every: int, attacks: list[str], workdir: Path, *, runs: int = 5,
        confidence: float = 0.99, forged_fraction: float = 0.1, top_updates: tuple[int, ...] = (0, 2),
        verifier_seed: int | None = None, mode: str = "auto", scan: bool = True,
        certain_trials: int = 5) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from pol.keys import generate_keypair, load_signing_key
    from pol.proof_file import ProofReader

    victim_sk, _ = generate_keypair(workdir / "victim")
    attacker_sk, _ = generate_keypair(workdir / "attacker")
    attacker = load_signing_key(attacker_sk)
    policies = [Policy(confidence, forged_fraction, top) for top in top_updates]
    honest, train_s = [], 0.0
    with bar("honest runs", runs) as advance:
        for r in range(runs):
            path = workdir / f"honest-{r}.pol.h5"
            train_s += train_honest(path, victim_sk, steps=steps, every=every, seed=1000 + r)
            honest.append(path)
            advance(1)
    key = trusted(load_signing_key(victim_sk).verify_key)
    doc: dict[str, Any] = {
        "schema_version": 1, "task": "digits-mlp", "mode": mode, "steps": steps, "every": every,
        "segments": -(-steps // every), "trials": trials, "honest_runs": runs, "forgeries_per_attack": min(runs, trials),
        "confidence": confidence, "forged_fraction": forged_fraction, "certain_trials": min(certain_trials, trials),
        "train_seconds_per_run": round(train_s / runs, 3), "settings": {}, "forged_steps": {},
    }
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(ProofReader(p)) for p in honest]
        for policy in policies:
            h = _honest(policy, readers, key, trials, workdir, verifier_seed, mode)
            h["verify_compute_fraction"] = h["verifier_steps"] / steps
            h["verify_compute_fraction_steps_only"] = h["steps_challenged"] / steps
            h["prover_compute_fraction"] = h["prover_steps"] / steps
            h["prover_seconds_over_train_seconds"] = h["prover_seconds"] / doc["train_seconds_per_run"]
            doc["settings"][policy.label] = {"top_updates": policy.top_updates, "honest": h, "attacks": {}}
    for name in attacks:
        steps_doc, results = _attack(name, policies, honest, attacker, trials, runs, workdir, verifier_seed, mode, scan,
                                     certain_trials)
        doc["forged_steps"][name] = steps_doc
        for label, result in results.items():
            doc["settings"][label]["attacks"][name] = result
    return doc


def _pct(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def render(doc: dict[str, Any]) -> str:
    lines = [f"digits-mlp, {doc['steps']} steps, k={doc['every']}; {doc['trials']} trial(s) per attack "
             f"({doc['certain_trials']} for those caught without sampling, marked *) over up to "
             f"{doc['forgeries_per_attack']} forgeries, {doc['honest_runs']} honest run(s); challenge: --confidence "
             f"{doc['confidence']} --forged-fraction {doc['forged_fraction']} (mode {doc['mode']})"]
    for label, setting in doc["settings"].items():
        h = setting["honest"]
        lines += ["", f"--top-updates {setting['top_updates']}: {h['steps_challenged']} single steps + "
                  f"{h['segments_challenged']:.1f} segment(s) per challenge; report claims "
                  f"{_pct(h['claimed_at_F'], 1)} at f={doc['forged_fraction']}",
                  f"{'attack':<28} {'n':>3} {'f steps':>8} {'claim@f':>8} {'predict':>8} {'caught':>7} {'95% CI':>13} "
                  f"{'answers':>8}  failing checks (answers)"]
        for name, r in setting["attacks"].items():
            s = doc["forged_steps"][name]
            f = _pct(s["forged_step_fraction"], 1)
            if s.get("derivation_matches_scan") is False:
                f += "!"
            checks = ", ".join(f"{k}:{v}" for k, v in r["failing_checks"].items()) or "-"
            shown = f"{name}*" if s["caught_without_sampling"] else name
            if r["refused_rate"]:
                checks = f"refused {r['refused_rate']:.0%}; " + checks
            lo, hi = r["caught_no_answer_95"]
            lines.append(f"{shown:<28} {r['trials']:>3} {f:>8} {_pct(r.get('claimed_at_f'), 1):>8} "
                         f"{_pct(r['predicted'], 1):>8} {_pct(r['caught_no_answer']):>7} {f'{lo:.0%}-{hi:.0%}':>13} "
                         f"{_pct(r['caught_answering']):>8}  {checks}")
        lines += [f"honest false rejections: {h['false_rejections']} of {h['trials']} {h['verdicts']}",
                  f"verifier compute: {h['verifier_steps']:.0f} steps = {h['verify_compute_fraction']:.2%} of training "
                  f"(single steps alone {h['verify_compute_fraction_steps_only']:.2%}); {h['verify_seconds']}s per verify",
                  f"honest prover's regeneration: {h['prover_steps']:.0f} steps = {h['prover_compute_fraction']:.2%} of "
                  f"training, {h['prover_seconds']}s ({h['prover_seconds_over_train_seconds']:.1%} of the "
                  f"{doc['train_seconds_per_run']}s training)"]
    mismatched = [n for n, s in doc["forged_steps"].items() if s.get("derivation_matches_scan") is False]
    if mismatched:
        lines.append(f"! derived forged steps differ from the full scan for: {', '.join(mismatched)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from scripts.attacks import ATTACKS

    ap = bench_parser(__doc__, f"3 trials of 400-step runs, attacks {', '.join(QUICK_ATTACKS)} (~2.5 CPU-minutes)")
    ap.add_argument("--trials", type=int, default=20, help="challenges per attack and of honest runs (default 20)")
    ap.add_argument("--certain-trials", type=int, default=5,
                    help="trials for attacks caught by a check that needs no sampling (default 5)")
    ap.add_argument("--runs", type=int, default=5, help="honest runs; also the forgeries per attack (default 5)")
    ap.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    ap.add_argument("--every", type=int, default=10, help="checkpoint every k steps (default 10)")
    ap.add_argument("--confidence", type=float, default=0.99, help="pol challenge --confidence (default 0.99)")
    ap.add_argument("--forged-fraction", type=float, default=0.1, help="pol challenge --forged-fraction (default 0.1)")
    ap.add_argument("--top-updates", default="0,2", help="comma-separated --top-updates settings (default 0,2)")
    ap.add_argument("--attacks", default=None,
                    help=f"comma-separated attack names, or 'all' (default: {','.join(DEFAULT_ATTACKS)}; "
                         f"--quick: {','.join(QUICK_ATTACKS)})")
    ap.add_argument("--mode", choices=["auto", "exact"], default="auto", help="verifier replay mode (default auto)")
    ap.add_argument("--verifier-seed", type=int, default=None, help="fix the verifier's randomness (default: OS entropy)")
    ap.add_argument("--no-scan", action="store_true", help="skip the full scan that checks the derived forged steps")
    ap.add_argument("--workdir", default=None, help="keep files here (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.steps, args.runs = min(args.trials, 3), min(args.steps, 400), min(args.runs, 2)
    named = args.attacks or ",".join(QUICK_ATTACKS if args.quick else DEFAULT_ATTACKS)
    attacks = list(ATTACKS) if named == "all" else [a for a in named.split(",") if a]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        ap.error(f"unknown attack(s) {unknown}; known: {', '.join(ATTACKS)}")
    tops = tuple(int(x) for x in args.top_updates.split(",") if x)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        doc = run(args.trials, args.steps, args.every, attacks, workdir, runs=args.runs, confidence=args.confidence,
                  forged_fraction=args.forged_fraction, top_updates=tops, verifier_seed=args.verifier_seed,
                  mode=args.mode, scan=not args.no_scan, certain_trials=args.certain_trials)
        doc["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(doc, indent=2, default=str) if args.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
