"""The quorum demo (four verifier processes) and the benchmark's attack and throughput helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quorum_demo_four_processes_one_byzantine(one_step_forgery, keys: dict, tmp_path: Path) -> None:
    """Three honest verifier processes reject a one-step forgery with evidence; the fourth accepts
    it (a validly signed lie): the quorum rejects, on the evidence it re-checked itself."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "quorum_demo.py"), "--out", str(tmp_path),
                           "--proof", str(one_step_forgery.path), "--signer", str(keys["other_pub"]),
                           "--byzantine", "accept", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["verdict"] == "rejected", proc.stderr[-2000:]
    assert len(doc["confirmed_rejections"]) == 3 and len(doc["accepting"]) == 1
    assert len({r["verifier"] for r in doc["confirmed_rejections"]} | set(doc["accepting"])) == 4
    assert sorted(p.name for p in (tmp_path / "votes").glob("*.json")) == ["v1.json", "v2.json", "v3.json", "v4.json"]


def test_bench_attestation_attacks_are_all_rejected() -> None:
    from scripts.bench_certify import attestation_attacks

    attacks, per_node = attestation_attacks()
    assert set(attacks) == {"debug_enclave", "wrong_measurement", "stale_nonce_replayed_quote",
                            "quote_binds_another_key", "quote_for_another_plan"}
    assert all(a["rejected"] for a in attacks.values()), attacks
    assert attacks["stale_nonce_replayed_quote"]["reason"] == "node 0: nonce_replayed" and per_node > 0


def test_bench_votes_per_second_counts_every_vote(honest_raw_proof: Path, tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    from scripts.bench_certify import votes_per_second
    from scripts.byzantine_voter import lying_vote

    template = lying_vote(honest_raw_proof, SigningKey.generate(), "accept").vote
    doc = votes_per_second(tmp_path, template, n=10, repeats=1)   # asserts the 10 votes are accepted
    assert doc["verifiers"] == 10 and doc["f"] == 3 and doc["votes_per_second"] > 0


def test_a_proof_named_by_a_relative_path_opens(honest_raw_proof: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandboxed HDF5 reader runs in its own folder: it must be given the absolute path."""
    from pol.proof_file import ProofReader

    monkeypatch.chdir(honest_raw_proof.parent)
    with ProofReader(honest_raw_proof.name) as r:
        assert r.num_checkpoints == 5
