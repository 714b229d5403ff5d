"""A Byzantine verifier: signs a vote without verifying, lying the way it is told.

Behaviours (``--lie``):

* ``accept`` — "verified", claiming it replayed every segment (an inflated draw);
* ``reject-false-evidence`` — "rejected" with evidence naming a real step and the digests the
  proof commits for it, but a made-up replayed digest: only a re-check by replay refutes it;
* ``reject-wrong-digest`` — evidence naming a digest the proof does not commit;
* ``reject-check`` — evidence that the ``chain`` check fails;
* ``reject-no-evidence`` — "rejected" with nothing to check.

Used by ``scripts/quorum_demo.py`` (as a separate process, one of the 3f+1 verifiers), by
``scripts/bench_certify.py`` and by ``tests/certify``::

    python -m scripts.byzantine_voter PROOF --key v4.key --lie accept --out votes/v4.json
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from nacl.signing import SigningKey

from pol.keys import load_signing_key
from pol.proof_file import ProofReader
from verifier.evidence import CHECK, REPLAY, STEP, Evidence
from verifier.subject import proof_subject
from verifier.unit_replay import committed_digest_after
from verifier.vote import SignedVote, Vote, sign_vote, write_vote

LIES = ("accept", "reject-false-evidence", "reject-wrong-digest", "reject-check", "reject-no-evidence")


def lying_vote(proof: str | os.PathLike[str], key: SigningKey, lie: str, step: int | None = None) -> SignedVote:
    """A validly signed vote on ``proof`` that says whatever ``lie`` says (nothing was replayed)."""
    if lie not in LIES:
        raise ValueError(f"unknown lie {lie!r}; one of {', '.join(LIES)}")
    with ProofReader(proof) as reader:
        subject = proof_subject(reader)
        n, steps = reader.num_checkpoints - 1, reader.num_recorded_steps
        t = steps // 2 if step is None else step
        start, end = committed_digest_after(reader, t), committed_digest_after(reader, t + 1)
    made_up = hashlib.sha256(b"a digest nobody computed" + t.to_bytes(8, "little")).digest()
    evidence: tuple[Evidence, ...] = ()
    if lie == "reject-false-evidence":
        evidence = (Evidence(REPLAY, None, STEP, t, t, t + 1, start, end, made_up, detail="(lie)"),)
    elif lie == "reject-wrong-digest":
        evidence = (Evidence(REPLAY, None, STEP, t, t, t + 1, start, made_up, made_up, detail="(lie)"),)
    elif lie == "reject-check":
        evidence = (Evidence(CHECK, check="chain", detail="(lie)"),)
    verdict = "verified" if lie == "accept" else "rejected"
    vote = Vote(subject, bytes(key.verify_key), verdict, "exact", n, tuple(range(n)), n, steps, (), None,
                (("replay", verdict == "verified"),), evidence)
    return sign_vote(vote, key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.byzantine_voter")
    p.add_argument("proof")
    p.add_argument("--key", required=True, help="this verifier's secret key")
    p.add_argument("--lie", choices=LIES, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    write_vote(lying_vote(args.proof, load_signing_key(args.key), args.lie), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
