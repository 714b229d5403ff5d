"""Security benchmark: how often each forgery is caught, and what verification costs.

Runs ``--trials`` honest proofs (digits-mlp, ``--steps`` steps, a checkpoint every ``--every``),
verifies each (honest false rejections), then uses them as victims: for every attack in
:mod:`scripts.attacks` and every trial, writes a forgery with a fresh attacker seed and verifies
it at the verifier's **default** settings with the attacker's own key trusted (the question is
whether the *training* is genuine) and the verifier's own unpredictable segment choice.

Prints a table (detection rate per attack, the check(s) that caught it, the detection
probability the report claimed, the rate predicted from the forged fraction); ``--json`` prints
one document instead. ``--quick`` is a small run (under 5 minutes on 2 cores)::

    python scripts/bench_security.py --quick
    python scripts/bench_security.py --trials 10 --steps 2000 --every 10 --json
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts._bench_common import bench_parser  # noqa: E402


def trusted(public_key: Any) -> Any:
    """A TrustedKey for raw public key bytes, hex, or a VerifyKey."""
    from nacl.signing import VerifyKey

    from pol.keys import TrustedKey, fingerprint

    if isinstance(public_key, str):
        public_key = bytes.fromhex(public_key)
    vk = public_key if isinstance(public_key, VerifyKey) else VerifyKey(bytes(public_key))
    return TrustedKey(vk, fingerprint(vk), "attacker's own key")


def judge(forgery: Any, public_key: Any, *, seed: int | None = None, segments: int | None = None,
          mode: str = "auto") -> tuple[str, set[str], dict]:
    """Verify a forgery at default settings; returns (verdict, failed check names, report info).

    A forgery the verifier refuses to judge (exit 2: e.g. an environment claim it cannot reproduce)
    has the verdict ``"refused"``: not accepted, and not a rejection on the training."""
    from pol.errors import InputError
    from verifier.api import VerifyOptions

    options = VerifyOptions(segments=segments, seed=seed, mode=mode)
    try:
        return _judge(forgery, public_key, options)
    except InputError as exc:
        return "refused", set(), {"refused": str(exc)}


def _judge(forgery: Any, public_key: Any, options: Any) -> tuple[str, set[str], dict]:
    from verifier.api import verify

    if "weights" in forgery.extra_files:
        from scripts.attacks.stale import check_published

        accepted, failed, how = check_published(forgery.path, forgery.extra_files["weights"], trusted(public_key),
                                                options)
        return ("verified" if accepted else "rejected"), failed, {"judged_by": how}
    report = verify(forgery.path, public_key=trusted(public_key), options=options)
    return report.verdict, {c.name for c in report.failed}, dict(report.info)


def train_honest(path: Path, key: Path, *, steps: int, every: int, seed: int) -> float:
    """Record an honest digits-mlp proof (pol.runner.train_task, as `pol train` does); returns seconds."""
    from pol.runner import train_task

    started = time.perf_counter()
    train_task(path, key, task="digits-mlp", steps=steps, every=every, seed=seed)
    return time.perf_counter() - started


def forged_fraction(forgery: Any, n: int) -> float | None:
    """Share of segments that fail replay, where the forgery knows it (None: caught without sampling)."""
    info = forgery.info
    name = forgery.attack
    if name.startswith(("interpolation", "adversarial", "tolerance-drift")):
        return 1.0
    if name == "blindfold-top-q":
        return 1.0 - len(info["genuine_segments"]) / n
    if name in ("single-jump",):
        return 1.0 / n
    if name.startswith("data-substitution") and "segments_touched" in info and forgery.expected_checks == {"replay"}:
        return info["segments_touched"] / n
    if "forged_fraction" in info:
        return float(info["forged_fraction"])
    if name == "splice-reindexed":
        return (n - info["join_segment"]) / n
    return None


@contextlib.contextmanager
def bar(label: str, total: int):
    import click

    if not sys.stderr.isatty():
        yield lambda n=1: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as b:
        yield b.update


def run(trials: int, steps: int, every: int, attacks: list[str], workdir: Path,
        verifier_seed: int | None = None, mode: str = "auto") -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from pol.keys import generate_keypair, load_signing_key
    from scripts.attacks import ATTACKS, load_victim
    from verifier.sampling import detection_probability

    victim_sk, victim_pk = generate_keypair(workdir / "victim")
    attacker_sk_path, _ = generate_keypair(workdir / "attacker")
    attacker = load_signing_key(attacker_sk_path)
    honest: list[Path] = []
    train_s, verify_s, replayed, trained, claimed = 0.0, 0.0, 0, 0, []
    honest_rejected = 0
    from verifier.api import VerifyOptions, verify

    with bar("honest runs", trials) as advance:
        for t in range(trials):
            path = workdir / f"honest-{t}.pol.h5"
            train_s += train_honest(path, victim_sk, steps=steps, every=every, seed=1000 + t)
            started = time.perf_counter()
            report = verify(path, public_key=str(victim_pk),
                            options=VerifyOptions(seed=None if verifier_seed is None else verifier_seed + t,
                                                  mode=mode))
            verify_s += time.perf_counter() - started
            honest_rejected += report.verdict != "verified"
            replayed += int(report.info.get("replayed_steps", 0))
            trained += steps
            claimed.append(report.info.get("detection_probability", {}))
            honest.append(path)
            advance(1)
    n_segments = -(-steps // every)
    results: dict[str, Any] = {}
    for name in attacks:
        rows = {"detected": 0, "refused": 0, "for_expected_reason": 0, "trials": 0, "failing_checks": Counter(),
                "predicted": [], "generate_s": 0.0, "attacker_steps": 0, "info": {}}
        with bar(name, trials) as advance:
            for t in range(trials):
                victim = load_victim(honest[t % len(honest)])
                out = workdir / f"{name}-{t}.pol.h5"
                started = time.perf_counter()
                forgery = ATTACKS[name](victim, out, attacker, 7 + 31 * t)
                rows["generate_s"] += time.perf_counter() - started
                rows["attacker_steps"] += forgery.trained_steps
                seed = None if verifier_seed is None else verifier_seed + 10_000 + t
                verdict, failed, info = judge(forgery, bytes(attacker.verify_key), seed=seed, mode=mode)
                rows["trials"] += 1
                rows["detected"] += verdict != "verified"
                rows["refused"] += verdict == "refused"
                expected = (verdict == "refused" and forgery.expect_refusal_in_auto_mode and mode == "auto") or \
                    (verdict == "rejected" and forgery.expected_checks <= failed)
                rows["for_expected_reason"] += expected
                rows["failing_checks"].update(failed)
                frac = forged_fraction(forgery, n_segments)
                s = int(info.get("segments_replayed", 0) or 0)
                rows["predicted"].append(1.0 if frac is None else detection_probability(n_segments, s, frac))
                rows["info"] = {k: v for k, v in forgery.info.items() if isinstance(v, (int, float, bool, str))}
                rows["expected"] = sorted(forgery.expected_checks)
                for p in [out, *forgery.extra_files.values()]:
                    Path(p).unlink(missing_ok=True)
                advance(1)
        n = rows["trials"]
        results[name] = {
            "detection_rate": rows["detected"] / n,
            "refused_rate": rows["refused"] / n,
            "trials": n,
            "caught_for_expected_reason": rows["for_expected_reason"] / n,
            "expected_checks": rows["expected"],
            "failing_checks": dict(sorted(rows["failing_checks"].items())),
            "predicted_detection": sum(rows["predicted"]) / n,
            "attacker_steps_per_trial": rows["attacker_steps"] / n,
            "generate_seconds_per_trial": round(rows["generate_s"] / n, 3),
            "last_trial_info": rows["info"],
        }
    claimed_f = {k: round(sum(c.get(k, 0.0) for c in claimed) / max(len(claimed), 1), 4) for k in ("f=0.1", "f=0.5")}
    return {
        "schema_version": 1,
        "task": "digits-mlp", "mode": mode, "steps": steps, "every": every, "segments": n_segments, "trials": trials,
        "attacks": results,
        "honest_false_rejection_rate": honest_rejected / max(trials, 1),
        "verify_compute_fraction": replayed / max(trained, 1),
        "verify_wallclock_fraction": verify_s / max(train_s, 1e-9),
        "train_seconds_per_run": round(train_s / max(trials, 1), 3),
        "verify_seconds_per_run": round(verify_s / max(trials, 1), 3),
        "claimed_detection_probability": claimed_f,
        "torch_threads": torch.get_num_threads(),
    }


def render(doc: dict[str, Any]) -> str:
    lines = [f"digits-mlp, {doc['steps']} steps, k={doc['every']} ({doc['segments']} segments), "
             f"{doc['trials']} trial(s) per attack, verifier at default settings (mode {doc['mode']})",
             f"{'attack':<30} {'detected':>9} {'expected':>9} {'predicted':>9}  failing checks"]
    for name, r in doc["attacks"].items():
        checks = ", ".join(f"{k}:{v}" for k, v in r["failing_checks"].items()) or "-"
        if r.get("refused_rate"):
            checks = f"refused (exit 2) {r['refused_rate']:.0%}; " + checks
        lines.append(f"{name:<30} {r['detection_rate']:>9.0%} {r['caught_for_expected_reason']:>9.0%} "
                     f"{r['predicted_detection']:>9.1%}  {checks}")
    lines += [
        f"honest false-rejection rate: {doc['honest_false_rejection_rate']:.0%} of {doc['trials']}",
        f"verification compute: {doc['verify_compute_fraction']:.2%} of training steps replayed; "
        f"wall clock {doc['verify_wallclock_fraction']:.0%} of training "
        f"({doc['verify_seconds_per_run']}s verify / {doc['train_seconds_per_run']}s train)",
        f"detection probability claimed by the report: {doc['claimed_detection_probability']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from scripts.attacks import ATTACKS

    ap = bench_parser(__doc__, "3 trials of 400-step runs (a few minutes)")
    ap.add_argument("--trials", type=int, default=10, help="trials per attack, and honest runs (default 10)")
    ap.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    ap.add_argument("--every", type=int, default=10, help="checkpoint every k steps (default 10)")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated attack names")
    ap.add_argument("--mode", choices=["auto", "exact", "tolerance"], default="auto",
                    help="verifier replay mode (default auto: bitwise on the recording stack)")
    ap.add_argument("--verifier-seed", type=int, default=None, help="fix the verifier's randomness (default: OS entropy)")
    ap.add_argument("--workdir", default=None, help="keep files here (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.steps = min(args.trials, 3), min(args.steps, 400)
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        ap.error(f"unknown attack(s) {unknown}; known: {', '.join(ATTACKS)}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        doc = run(args.trials, args.steps, args.every, attacks, workdir, args.verifier_seed, args.mode)
        doc["bench_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
