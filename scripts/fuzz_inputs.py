"""Fuzz every input the ``pol`` CLI reads with generated malformed files; count the bad outcomes.

    python scripts/fuzz_inputs.py --quick --json          # ~300 cases (the test suite runs this)
    python scripts/fuzz_inputs.py --json --csv fuzz.csv   # the full corpus (>= 3,000 cases)

Input kinds: proofs (bit flips, truncation, HDF5-level edits of dtypes, shapes, chunking and
filters, links (soft, external, hard cycles), virtual datasets (also self-referencing), external
storage (also a FIFO), attributes, nesting, member floods; plan edits, and proofs forged under a
key the verifier trusts with plans that ask for absurd resources), safetensors, key files,
challenge and response files, ``/zk`` sections, simulated-TEE evidence (quote, policy and
collateral JSON, the verifier's state files). Cases are reproducible from ``--seed``.

Each case runs ``pol ...`` in its own process (scripts/fuzz/runner.py) with a timeout and a memory
limit. Bad outcomes, each counted in the summary: ``crashes`` (killed by a signal), ``hangs``
(killed at the timeout), ``exit0_on_garbage``, ``unexplained_exit0_bitflips`` (a flip or
re-encoding accepted although the content a reader sees changed, docs/FORMAT.md), ``internal_errors``,
``multiline_errors``, ``memory_blowups``, ``control_chars_in_output``, ``wrong_exit`` (another
exit code than the case's class allows), ``bad_json`` (``--json`` output that does not parse).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.fuzz import content  # noqa: E402
from scripts.fuzz.corpus import Corpus, build_corpus  # noqa: E402
from scripts.fuzz.inputs import challenge_cases, key_cases, response_cases, safetensors_cases, tee_cases, zk_cases  # noqa: E402
from scripts.fuzz.proofs import ForgeSource, bitflip_cases, plan_cases, structural_cases, truncation_cases  # noqa: E402
from scripts.fuzz.runner import ACCEPT, CLASSIFY, ERROR, EXPECTED_CODES, REJECT, Case, Outcome, Runner  # noqa: E402

SCHEMA_VERSION = 1
BAD = ("crashes", "hangs", "exit0_on_garbage", "unexplained_exit0_bitflips", "internal_errors", "multiline_errors",
       "memory_blowups", "control_chars_in_output", "wrong_exit", "bad_json", "build_errors")
QUICK_CASES = 300
# Cases whose inputs take long to build or read (tens of MB, 10^4-10^6 members): a few in --quick.
HEAVY = re.compile(r"50001|one-million|60MB|50MB|16MB|long-line|segments-million|table=2M|milestones=4M|"
                   r"environment-flood|fields=flood|30000|layout-million|header-deep|deep-json")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def control_cases(c: Corpus) -> Iterator[Case]:
    """Honest inputs: each must verify (exit 0), or the harness itself is broken."""
    yield Case("proof", "control", "full", c.verify_args(c.full), ACCEPT, json_stdout=True)
    yield Case("proof", "control", "raw", c.verify_args(c.raw), ACCEPT, json_stdout=True)
    yield Case("proof", "control", "compact", c.verify_args(c.compact), ACCEPT, json_stdout=True)
    yield Case("response", "control", "interactive", ["verify", str(c.compact), "--key", str(c.pub), "--response",
                                                      str(c.response), "--challenge", str(c.challenge), "--json"],
               ACCEPT, json_stdout=True)
    yield Case("safetensors", "control", "weights", ["verify", str(c.weights), "--proof", str(c.full), "--key", str(c.pub),
                                                     "--segments", "1", "--seed", "0", "--json"], ACCEPT, json_stdout=True)
    yield Case("zk", "control", "zk", ["zk", "verify", str(c.zk), "--key", str(c.pub), "--json"], ACCEPT, json_stdout=True)


def all_cases(c: Corpus, seed: int, flip_scale: float) -> list[Case]:
    rng = random.Random(seed)
    forge = ForgeSource(c)
    n = lambda k: max(1, int(k * flip_scale))  # noqa: E731
    generators = [structural_cases(c, rng), plan_cases(c, forge), bitflip_cases(c, rng, n(1200)),
                  truncation_cases(c, rng, n(60)), safetensors_cases(c, rng, n(120)), key_cases(c, rng, n(30)),
                  challenge_cases(c, rng), response_cases(c, rng, n(100)), zk_cases(c, rng, n(100)),
                  tee_cases(c, rng, n(60))]
    return [case for gen in generators for case in gen]


def quick_sample(cases: list[Case], seed: int, count: int) -> list[Case]:
    """At least one case of every (kind, family) and every expectation in it, the rest drawn at
    random; at most a few heavy ones."""
    rng = random.Random(seed + 1)
    light = [c for c in cases if not HEAVY.search(c.name)]
    heavy = [c for c in cases if HEAVY.search(c.name)]
    groups: dict[tuple[str, str, str], list[Case]] = {}
    for case in light:
        groups.setdefault((case.kind, case.family, case.expect), []).append(case)
    chosen = [rng.choice(g) for _, g in sorted(groups.items())]
    chosen += rng.sample(heavy, min(3, len(heavy)))
    rest = [c for c in light if c not in chosen]
    chosen += rng.sample(rest, max(0, min(len(rest), count - len(chosen))))
    return chosen


def judge(o: Outcome) -> tuple[list[str], str]:
    """The bad-outcome flags of one case, and the explanation of an accepted mutation."""
    case, flags, explanation = o.case, [], ""
    if o.build_error:
        return ["build_errors"], ""
    if o.timed_out:
        return ["hangs"], ""
    if o.signal is not None:
        return ["crashes"], f"signal {o.signal}"
    text = o.stdout + o.stderr
    err_lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    if "internal error" in o.stderr or "Traceback" in o.stderr:
        flags.append("internal_errors")
    if len(err_lines) > 1:
        flags.append("multiline_errors")
    if _CONTROL.search(text):
        flags.append("control_chars_in_output")
    if re.search(r"MemoryError|Cannot allocate memory|std::bad_alloc", o.stderr):
        flags.append("memory_blowups")
    if case.json_stdout and o.code in (0, 1):
        try:
            json.loads(o.stdout)
        except ValueError:
            flags.append("bad_json")
    if o.code == 0 and case.expect in (ERROR, REJECT):
        flags.append("exit0_on_garbage")
    elif o.code == 0 and case.expect == CLASSIFY:
        explanation = _explain(o) or ""
        if not explanation:
            flags.append("unexplained_exit0_bitflips")
    if o.code not in EXPECTED_CODES[case.expect] and "exit0_on_garbage" not in flags:
        flags.append("wrong_exit")
    return flags, explanation


def _explain(o: Outcome) -> str | None:
    case = o.case
    if case.target is None or case.origin is None or o.case_dir is None:
        return None
    mutated = o.case_dir / case.target
    if not mutated.exists():
        return None
    try:
        if case.kind == "safetensors":
            return content.explain_weights_change(case.origin, mutated)
        if case.kind == "key":
            return content.explain_key_change(case.origin, mutated)
        return content.explain_proof_change(case.origin, mutated)
    except Exception:  # the comparison cannot read the mutated file: no explanation
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"about {QUICK_CASES} cases (the test suite's run)")
    p.add_argument("--cases", type=int, default=None, help="run this many cases (a seeded sample)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (cases are reproducible from it)")
    p.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="cases run at a time")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per case (RLIMIT_AS)")
    p.add_argument("--mode", choices=["fork", "exec"], default="fork",
                   help="fork: a pre-imported server forks each case (fast); exec: a fresh python -m pol per case")
    p.add_argument("--kinds", default=None, help="comma-separated input kinds to run (default: all)")
    p.add_argument("--names", default=None,
                   help="only cases whose family:name matches this regular expression (to rerun one finding)")
    p.add_argument("--workdir", default=None, help="where the corpus and cases live (default: a temporary directory)")
    p.add_argument("--csv", default=None, help="write one row per case here")
    p.add_argument("--keep-bad", action="store_true", help="keep the directories of bad cases (in the workdir)")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = p.parse_args(argv)

    started = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pol-fuzz-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # The sandboxed reader's own wall limit stays under the case timeout, so a slow read is refused, not a hang.
    env = {"OMP_NUM_THREADS": "1", "POL_LIMIT_WALL_SECONDS": str(max(5, int(args.timeout * 0.5)))}
    runner = Runner(jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory_mb, mode=args.mode, env=env)
    _log(f"building the corpus in {workdir}")
    corpus = build_corpus(workdir / "corpus", Runner(jobs=args.jobs, timeout=600, memory_mb=args.memory_mb,
                                                     mode=args.mode, env=env))
    cases = all_cases(corpus, args.seed, 0.05 if args.quick else 1.0)
    if args.kinds:
        wanted = set(args.kinds.split(","))
        cases = [c for c in cases if c.kind in wanted]
    if args.names:
        cases = [c for c in cases if re.search(args.names, f"{c.family}:{c.name}")]
    count = args.cases or (QUICK_CASES if args.quick else None)
    if count is not None and count < len(cases):
        cases = quick_sample(cases, args.seed, count)
    cases = list(control_cases(corpus)) + cases
    _log(f"{len(cases)} cases, {args.jobs} at a time, mode {args.mode}")

    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    explained: Counter[str] = Counter()
    bad: list[dict[str, Any]] = []
    cases_dir = workdir / "cases"

    def on_result(o: Outcome) -> bool:
        flags, explanation = judge(o)
        for f in flags:
            counts[f] += 1
        if explanation:
            explained[explanation] += 1
        row = {"index": o.index, "kind": o.case.kind, "family": o.case.family, "name": _safe(o.case.name),
               "expect": o.case.expect, "exit": o.code, "signal": o.signal, "timed_out": o.timed_out,
               "wall_s": round(o.wall_s, 3), "max_rss_mb": round(o.max_rss_mb, 1), "flags": " ".join(flags),
               "explanation": explanation, "argv": _safe(" ".join(o.case.argv))[:300],
               "stderr": _safe(o.build_error or (o.stderr.strip().splitlines()[-1] if o.stderr.strip() else ""))[:300]}
        rows.append(row)
        if flags and len(bad) < 200:
            bad.append(row)
        if len(rows) % 100 == 0:
            _log(f"{len(rows)}/{len(cases)} cases, bad so far: {dict(counts)}")
        return args.keep_bad and bool(flags)

    runner.run(cases, cases_dir, on_result)
    rows.sort(key=lambda r: r["index"])
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "seed": args.seed, "quick": args.quick, "mode": args.mode, "jobs": args.jobs,
        "timeout_s": args.timeout, "memory_limit_mb": args.memory_mb, "cases": len(rows),
        **{k: counts.get(k, 0) for k in BAD},
        "max_rss_mb": round(max((r["max_rss_mb"] for r in rows), default=0.0), 1),
        "max_wall_s": round(max((r["wall_s"] for r in rows), default=0.0), 2),
        "exit_codes": dict(sorted(Counter(str(r["exit"]) for r in rows).items())),
        "explained_exit0": dict(explained),
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "by_family": dict(sorted(Counter(f"{r['kind']}/{r['family']}" for r in rows).items())),
        "seconds": round(time.monotonic() - started, 1),
        "bad_cases": bad,
    }
    summary["verdict"] = "clean" if all(summary[k] == 0 for k in BAD) else "bad outcomes"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k in ("cases", *BAD, "max_rss_mb", "max_wall_s", "seconds"):
            print(f"{k:28} {summary[k]}", file=sys.stderr)
        for row in bad[:40]:
            print(f"  BAD {row['flags']}: {row['kind']}/{row['family']}/{row['name']} exit {row['exit']}: {row['stderr']}",
                  file=sys.stderr)
    return 0 if summary["verdict"] == "clean" else 1


def _safe(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _log(msg: str) -> None:
    print(f"[fuzz] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
