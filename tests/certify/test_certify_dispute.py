"""Disputes and fraud proofs: a forged step is proven in one step's replay; an honest step cannot
be framed; a fraud proof naming a digest the proof does not commit (or the prover did not sign),
or carrying another state, is rejected."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import h5py
import pytest

from pol.errors import ProofFormatError
from pol.hashing import state_digest
from pol.keys import load_signing_key
from pol.proof_file import ProofReader
from scripts.attacks.one_step import ForgerOracle
from verifier.dispute import LocalProver, ReplayingOracle, dispute_segment
from verifier.fraud_proof import COMMITTED, FraudProof, read_fraud_proof, referee, sign_claim, write_fraud_proof
from verifier.subject import proof_subject
from verifier.unit_replay import ExactUnitReplayer


class Opened:
    def __init__(self, path: Path):
        self.reader = ProofReader(path)
        self.units = ExactUnitReplayer(self.reader)
        self.subject = proof_subject(self.reader).digest

    def close(self) -> None:
        self.reader.close()


@pytest.fixture()
def opened():
    held: list[Opened] = []

    def open_(path: Path) -> Opened:
        held.append(Opened(path))
        return held[-1]

    yield open_
    for o in held:
        o.close()


def judge(fp: FraudProof, proof: Path, pub: Path, tmp_path: Path):
    path = tmp_path / "fraud.h5"
    write_fraud_proof(path, fp)
    return referee(path, proof, str(pub))


def failed(result) -> set[str]:
    return {c.name for c in result.checks if not c.passed}


def test_forged_step_with_committed_digests_is_proven_in_one_step(one_step_forgery, keys, opened, tmp_path) -> None:
    t = one_step_forgery.info["forged_step"]
    o = opened(one_step_forgery.path)
    outcome = dispute_segment(o.units, one_step_forgery.info["forged_segment"], o.subject)
    fp = outcome.fraud_proof
    assert outcome.disagreement and outcome.rounds == 0 and (fp.start_step, fp.stop_step) == (t, t + 1)
    assert (fp.start_basis, fp.end_basis) == (COMMITTED, COMMITTED) and not fp.claims
    result = judge(fp, one_step_forgery.path, keys["other_pub"], tmp_path)
    assert result.verdict == "proven" and result.exit_code == 0 and result.info["replayed_steps"] == 1


def test_bisection_finds_the_forged_step_in_log2_k_rounds(nostep_proofs, keys, opened, tmp_path) -> None:
    _, forgery = nostep_proofs
    t, j = forgery.info["forged_step"], forgery.info["forged_segment"]
    o = opened(forgery.path)
    assert o.reader.step_state_digests is None
    prover = LocalProver(ForgerOracle(o.reader, o.units.replayer, forgery.info), load_signing_key(keys["other_key"]),
                         o.subject)
    outcome = dispute_segment(o.units, j, o.subject, prover)
    fp = outcome.fraud_proof
    assert (fp.start_step, fp.stop_step) == (t, t + 1)
    assert 1 <= outcome.rounds <= math.ceil(math.log2(10)) and len(prover.answered) == outcome.rounds
    assert {c.step for c in fp.claims} <= {t, t + 1} and fp.claims  # the ends the proof does not commit are signed
    assert outcome.state_source == "prover (digest-checked)"
    result = judge(fp, forgery.path, keys["other_pub"], tmp_path)
    assert result.verdict == "proven", result.checks


def test_an_honestly_replaying_prover_is_still_convicted(nostep_proofs, keys, opened, tmp_path) -> None:
    # the prover answers with honest replays: the disagreement moves to the segment's last step,
    # whose committed end is the forged trajectory's
    _, forgery = nostep_proofs
    o = opened(forgery.path)
    outcome = dispute_segment(o.units, forgery.info["forged_segment"], o.subject,
                              LocalProver(ReplayingOracle(o.units), load_signing_key(keys["other_key"]), o.subject))
    assert outcome.fraud_proof.stop_step == o.units.segment_steps(forgery.info["forged_segment"])[1]
    assert judge(outcome.fraud_proof, forgery.path, keys["other_pub"], tmp_path).verdict == "proven"


def test_a_prover_that_stops_answering_cannot_escape(nostep_proofs, keys, opened, tmp_path) -> None:
    _, forgery = nostep_proofs
    o = opened(forgery.path)

    class Silent:
        def claim(self, step):
            return None

        def state(self, step):
            return None

    outcome = dispute_segment(o.units, forgery.info["forged_segment"], o.subject, Silent())
    fp = outcome.fraud_proof
    assert outcome.rounds == 0 and fp.steps == 10 and outcome.state_source == "stored"
    result = judge(fp, forgery.path, keys["other_pub"], tmp_path)
    assert result.verdict == "proven" and result.info["replayed_steps"] == 10  # the whole segment, committed ends


def test_claims_signed_by_another_key_stop_the_bisection(nostep_proofs, keys, opened, tmp_path) -> None:
    _, forgery = nostep_proofs
    o = opened(forgery.path)
    impostor = LocalProver(ForgerOracle(o.reader, o.units.replayer, forgery.info), load_signing_key(keys["key"]),
                           o.subject)   # the trainer's key, not the key that signed this proof
    outcome = dispute_segment(o.units, forgery.info["forged_segment"], o.subject, impostor)
    fp = outcome.fraud_proof
    assert outcome.rounds == 0 and impostor.answered == [25] and fp.steps == 10 and not fp.claims
    assert "no valid signed claim" in outcome.log[-1]
    assert judge(fp, forgery.path, keys["other_pub"], tmp_path).verdict == "proven"


def test_a_state_from_the_prover_is_digest_checked(one_step_forgery, keys, opened) -> None:
    o = opened(one_step_forgery.path)

    class Lying:
        def claim(self, step):
            return None

        def state(self, step):
            s = o.units.state_after(step)[0]
            return {k: (v + 1 if v.dtype.kind == "f" else v) for k, v in s.items()}

    outcome = dispute_segment(o.units, one_step_forgery.info["forged_segment"], o.subject, Lying())
    assert outcome.state_source == "regenerated"
    assert state_digest(outcome.fraud_proof.state) == outcome.fraud_proof.start_digest


def test_an_honest_segment_has_no_dispute(honest_raw_proof, opened) -> None:
    o = opened(honest_raw_proof)
    for j in range(4):
        outcome = dispute_segment(o.units, j, o.subject)
        assert not outcome.disagreement and outcome.fraud_proof is None


def _honest_fraud_proof(o: Opened, t: int, **changes) -> FraudProof:
    per_step = o.reader.step_state_digests
    state = o.units.state_after(t)[0]
    base = FraudProof(o.subject, t, t + 1, COMMITTED, COMMITTED, per_step[t], per_step[t + 1], b"\x00" * 32, state)
    return dataclasses.replace(base, **changes)


def test_an_honest_step_cannot_be_framed(honest_raw_proof, keys, opened, tmp_path) -> None:
    o = opened(honest_raw_proof)
    result = judge(_honest_fraud_proof(o, 15), honest_raw_proof, keys["pub"], tmp_path)
    assert result.verdict == "not proven" and result.exit_code == 1 and failed(result) == {"replay"}


def test_a_fraud_proof_naming_the_wrong_digest_is_rejected(honest_raw_proof, keys, opened, tmp_path) -> None:
    o = opened(honest_raw_proof)
    wrong = _honest_fraud_proof(o, 15, end_digest=bytes(32))
    result = judge(wrong, honest_raw_proof, keys["pub"], tmp_path)
    assert result.verdict == "not proven" and failed(result) == {"end_digest"}
    result = judge(_honest_fraud_proof(o, 15, start_digest=o.reader.step_state_digests[14]), honest_raw_proof,
                   keys["pub"], tmp_path)
    assert failed(result) == {"start_digest"}


def test_a_fraud_proof_carrying_another_state_is_rejected(honest_raw_proof, keys, opened, tmp_path) -> None:
    o = opened(honest_raw_proof)
    other = o.units.state_after(14)[0]  # the state one step earlier: replaying it cannot reach the end digest
    result = judge(_honest_fraud_proof(o, 15, state=other), honest_raw_proof, keys["pub"], tmp_path)
    assert result.verdict == "not proven" and failed(result) == {"state"}


def test_claims_must_be_signed_by_the_provers_key(nostep_proofs, keys, opened, tmp_path) -> None:
    honest, _ = nostep_proofs
    o = opened(honest)
    t = 23
    state = o.units.state_after(t)[0]
    forged_end = bytes(range(32))
    claim_by = {name: sign_claim(load_signing_key(keys[name]), o.subject, t + 1, forged_end)
                for name in ("key", "other_key")}
    fp = FraudProof(o.subject, t, t + 1, "claim", "claim", state_digest(state), forged_end, bytes(32), state,
                    (sign_claim(load_signing_key(keys["other_key"]), o.subject, t, state_digest(state)),
                     claim_by["other_key"]))
    result = judge(fp, honest, keys["pub"], tmp_path)   # a verifier framing the prover with its own signatures
    assert result.verdict == "not proven" and failed(result) == {"start_digest", "end_digest"}
    # had the prover really signed that false end digest, the fraud would be its own, and proven
    signed = dataclasses.replace(fp, claims=(sign_claim(load_signing_key(keys["key"]), o.subject, t, state_digest(state)),
                                             claim_by["key"]))
    assert judge(signed, honest, keys["pub"], tmp_path).verdict == "proven"


def test_a_fraud_proof_about_another_proof_is_rejected(honest_raw_proof, one_step_forgery, keys, opened,
                                                       tmp_path) -> None:
    o = opened(one_step_forgery.path)
    fp = dispute_segment(o.units, one_step_forgery.info["forged_segment"], o.subject).fraud_proof
    result = judge(fp, honest_raw_proof, keys["pub"], tmp_path)
    assert result.verdict == "not proven" and "subject" in failed(result)
    result = judge(fp, one_step_forgery.path, keys["pub"], tmp_path)  # the right proof, an untrusted signer
    assert result.verdict == "not proven" and failed(result) == {"proof"}


def test_malformed_fraud_proofs_are_input_errors(honest_raw_proof, keys, opened, tmp_path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_pol

    o = opened(honest_raw_proof)
    path = tmp_path / "fraud.h5"
    write_fraud_proof(path, _honest_fraud_proof(o, 15))
    assert read_fraud_proof(path).start_step == 15
    for attr, value in (("format_version", 9), ("start_basis", "trust-me"), ("claims", "{not json"),
                        ("stop_step", 15)):
        bad = tmp_path / f"bad-{attr}.h5"
        write_fraud_proof(bad, _honest_fraud_proof(o, 15))
        with h5py.File(bad, "r+") as f:
            f.attrs[attr] = value
        with pytest.raises(ProofFormatError):
            read_fraud_proof(bad)
    code, _, err = run_pol(["dispute", "referee", str(bad), "--proof", str(honest_raw_proof), "--key", str(keys["pub"])],
                           capsys)
    assert code == 2 and "Traceback" not in err
    code, out, _ = run_pol(["dispute", "referee", str(path), "--proof", str(honest_raw_proof), "--key",
                            str(keys["pub"]), "--json"], capsys)
    assert code == 1 and json.loads(out)["verdict"] == "not proven"


def test_cli_dispute_alone_and_referee(one_step_forgery, keys, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_pol

    out = tmp_path / "fraud.h5"
    code, doc, _ = run_pol(["dispute", "run", str(one_step_forgery.path), "--segment",
                            str(one_step_forgery.info["forged_segment"]), "--out", str(out), "--json"], capsys)
    t = one_step_forgery.info["forged_step"]
    assert code == 0 and json.loads(doc)["disputed_steps"] == [t, t + 1]
    code, _, _ = run_pol(["dispute", "run", str(one_step_forgery.path), "--segment", "0", "--out",
                          str(tmp_path / "none.h5")], capsys)
    assert code == 1 and not (tmp_path / "none.h5").exists()
    code, doc, _ = run_pol(["dispute", "referee", str(out), "--proof", str(one_step_forgery.path), "--key",
                            str(keys["other_pub"]), "--json"], capsys)
    assert code == 0 and json.loads(doc)["verdict"] == "proven"
    # one state, not the proof's five checkpoints: the referee gets only what one step needs
    assert out.stat().st_size < one_step_forgery.path.stat().st_size / 3


def test_cli_two_party_dispute_over_torch_distributed(nostep_proofs, keys, tmp_path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Prover and verifier as two real processes (gloo): 4 rounds of signed claims, then the referee."""
    from cli_runner import run_pol

    _, forgery = nostep_proofs
    out = tmp_path / "fraud.h5"
    code, doc, err = run_pol(["dispute", "run", str(forgery.path), "--segment", str(forgery.info["forged_segment"]),
                              "--prover-key", str(keys["other_key"]), "--out", str(out), "--json"], capsys)
    summary = json.loads(doc)
    assert code == 0, err
    assert summary["rounds"] == 4 and summary["state_source"] == "prover (digest-checked)"
    fp = read_fraud_proof(out)
    assert fp.steps == 1 and len(fp.claims) >= 1 and fp.end_basis in ("claim", "committed")
    assert referee(out, forgery.path, str(keys["other_pub"])).verdict == "proven"
