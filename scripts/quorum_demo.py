#!/usr/bin/env python
"""A verifier quorum end to end: n = 3f+1 verifier processes vote, ``pol quorum certify`` decides.

    python scripts/quorum_demo.py --out demo-quorum                          # honest proof, 4 honest verifiers
    python scripts/quorum_demo.py --out demo-quorum --forged                 # a proof with one forged step
    python scripts/quorum_demo.py --out demo-quorum --byzantine accept --forged   # f liars accept it anyway
    python scripts/quorum_demo.py --out demo-quorum --proof P.pol.h5 --signer K.pub  # vote on your own proof

It trains a small proof (digits-mlp, 40 steps, k = 10; with ``--forged`` one of its steps is
nudged, ``scripts/attacks/one_step.py``), makes a key per verifier, then starts every verifier as
its own process at once: ``pol verify PROOF --key TRAINER.pub --vote votes/vI.json
--verifier-key vI.key`` (its own key, its own randomness), or for the last f with ``--byzantine
LIE``, ``python -m scripts.byzantine_voter`` (a validly signed lie). Finally it runs ``pol quorum
certify votes/ --verifiers verifiers.txt --f F --proof PROOF`` and exits with its code (0
accepted, 1 rejected or undecided).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from scripts.byzantine_voter import LIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for keys, proof, votes (created)")
    p.add_argument("--f", type=int, default=1, help="Byzantine verifiers tolerated (n = 3f+1 processes)")
    p.add_argument("--forged", action="store_true", help="vote on a proof with one forged step")
    p.add_argument("--byzantine", choices=LIES, default=None, help="the last f verifiers lie this way")
    p.add_argument("--proof", default=None, help="vote on this proof instead of training one (with --signer)")
    p.add_argument("--signer", default=None, help="with --proof: the public key the verifiers trust for it")
    p.add_argument("--json", action="store_true", help="print the quorum's JSON document on stdout")
    args = p.parse_args(argv)

    from pol.keys import generate_keypair
    from pol.runner import train_task

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    n = 3 * args.f + 1
    trainer = generate_keypair(out / "trainer", overwrite=True)
    verifiers = [generate_keypair(out / f"v{i}", overwrite=True) for i in range(1, n + 1)]
    (out / "verifiers.txt").write_text("".join(f"{pub.name}\n" for _, pub in verifiers))
    proof, signer_pub = out / "run.pol.h5", trainer[1]
    if (args.proof is None) != (args.signer is None):
        p.error("--proof and --signer go together")
    if args.proof is not None:
        proof, signer_pub = Path(args.proof).resolve(), Path(args.signer).resolve()
    else:
        print(f"training digits-mlp (40 steps, k = 10) -> {proof}", file=sys.stderr)
        train_task(proof, trainer[0], task="digits-mlp", steps=40, every=10, seed=0)
    if args.forged and args.proof is None:
        from scripts.attacks import load_victim
        from scripts.attacks.one_step import forge

        attacker = generate_keypair(out / "attacker", overwrite=True)
        forgery = forge(load_victim(proof), out / "forged.pol.h5", attacker[0], seed=1)
        proof, signer_pub = forgery.path, attacker[1]
        print(f"forged step {forgery.info['forged_step']} -> {proof}", file=sys.stderr)
    votes = out / "votes"
    votes.mkdir(exist_ok=True)
    for old in votes.glob("*.json"):
        old.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    procs = []
    for i, (key, _) in enumerate(verifiers, 1):
        liar = args.byzantine is not None and i > n - args.f
        cmd = ([sys.executable, "-m", "scripts.byzantine_voter", str(proof), "--key", str(key), "--lie", args.byzantine,
                "--out", str(votes / f"v{i}.json")] if liar else
               [sys.executable, "-m", "pol", "verify", str(proof), "--key", str(signer_pub), "--vote",
                str(votes / f"v{i}.json"), "--verifier-key", str(key)])
        procs.append((i, liar, subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)))
        print(f"verifier {i}: process {procs[-1][2].pid}{' (Byzantine: ' + str(args.byzantine) + ')' if liar else ''}",
              file=sys.stderr)
    t0 = time.perf_counter()
    for i, liar, proc in procs:
        code = proc.wait()
        err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip().splitlines()
        print(f"verifier {i}: exit {code} ({err[-1] if err else ''})", file=sys.stderr)
    print(f"{n} verifiers voted in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    cmd = [sys.executable, "-m", "pol", "quorum", "certify", str(votes), "--verifiers", str(out / "verifiers.txt"),
           "--f", str(args.f), "--proof", str(proof), *(["--json"] if args.json else [])]
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
