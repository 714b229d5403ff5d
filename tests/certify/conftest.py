"""Fixtures for certification tests: verifier keys, a one-step forgery, proofs without per-step
digests, and votes cast by honest verifiers (each a real verification)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def verifier_keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    """Five verifier key pairs: the first four are the trusted quorum (f = 1), the fifth is unknown."""
    from pol.keys import generate_keypair

    d = tmp_path_factory.mktemp("verifiers")
    return [generate_keypair(d / f"v{i}") for i in range(1, 6)]


@pytest.fixture(scope="session")
def verifiers_file(verifier_keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quorum") / "verifiers.txt"
    path.write_text("# the trusted quorum\n" + "".join(f"{pub}\n" for _, pub in verifier_keys[:4]))
    return path


@pytest.fixture(scope="session")
def one_step_forgery(honest_raw_proof: Path, keys: dict, tmp_path_factory: pytest.TempPathFactory):
    """The attacker's proof: honest but for step 25 (segment 2), signed with the attacker's key."""
    from scripts.attacks import load_victim
    from scripts.attacks.one_step import forge

    return forge(load_victim(honest_raw_proof), tmp_path_factory.mktemp("forged") / "forged.pol.h5",
                 keys["other_key"], seed=1)


@pytest.fixture(scope="session")
def nostep_proofs(keys: dict, tmp_path_factory: pytest.TempPathFactory):
    """(honest proof, its one-step forgery at step 23) recorded without per-step digests."""
    from pol.runner import train_task
    from scripts.attacks import load_victim
    from scripts.attacks.one_step import forge

    d = tmp_path_factory.mktemp("nostep")
    honest = d / "honest.pol.h5"
    train_task(honest, keys["key"], task="digits-mlp", steps=40, every=10, seed=3, codec="raw", step_digests=False)
    forgery = forge(load_victim(honest), d / "forged.pol.h5", keys["other_key"], seed=2, step=23)
    return honest, forgery


def _cast(proof: Path, trusted_pub: Path, key_path: Path, seed: int, out: Path):
    from pol.keys import load_signing_key
    from verifier.api import verify
    from verifier.vote import cast_vote

    report = verify(proof, public_key=str(trusted_pub), seed=seed, progress_check=False)
    return cast_vote(proof, report, load_signing_key(key_path), out)


@pytest.fixture(scope="session")
def honest_votes(honest_raw_proof: Path, keys: dict, verifier_keys, tmp_path_factory: pytest.TempPathFactory):
    """Votes of verifiers 1-3 on the honest proof (each verified it for real)."""
    d = tmp_path_factory.mktemp("honest_votes")
    return [_cast(honest_raw_proof, keys["pub"], verifier_keys[i][0], 100 + i, d / f"v{i + 1}.json") for i in range(3)]


@pytest.fixture(scope="session")
def forged_votes(one_step_forgery, keys: dict, verifier_keys, tmp_path_factory: pytest.TempPathFactory):
    """Votes of verifiers 1-3 on the one-step forgery (each rejects it, with evidence)."""
    d = tmp_path_factory.mktemp("forged_votes")
    return [_cast(one_step_forgery.path, keys["other_pub"], verifier_keys[i][0], 200 + i, d / f"v{i + 1}.json")
            for i in range(3)]


SPLIT_TINY = ["--task", "digits-mlp", "--stages", "3", "--steps", "10", "--every", "5", "--micro-batches", "2"]


@pytest.fixture(scope="session")
def tee_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pol.cli import main

    d = tmp_path_factory.mktemp("tee") / "state"
    with pytest.raises(SystemExit) as exc:
        main(["tee", "init", "--state", str(d)])
    assert exc.value.code in (0, None)
    return d


@pytest.fixture(scope="session")
def attested_run(tee_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An honest attested run with committed weights (3 nodes, digits-mlp, 10 steps), through
    `pol split train --attest --commit` as a user runs it: (run dir, keys dir)."""
    from pol.cli import main

    d = tmp_path_factory.mktemp("attested")
    keys, run = d / "keys", d / "run"
    with pytest.raises(SystemExit) as exc:
        main(["split", "train", *SPLIT_TINY, "--out", str(run), "--keys", str(keys), "--attest", str(tee_dir), "--commit",
              "--json"])
    assert exc.value.code in (0, None)
    return run, keys
