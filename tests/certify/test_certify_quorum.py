"""The verifier quorum: n = 3f+1 signed votes, checked rejection evidence, f Byzantine verifiers.

Honest votes come from real verifications (``conftest``); Byzantine ones are validly signed lies
(``scripts/byzantine_voter.py``). Every test asserts the outcome *and* why each vote counted or not.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from pol.errors import InputError
from pol.keys import load_signing_key
from pol.proof_file import ProofReader
from scripts.byzantine_voter import LIES, lying_vote
from verifier.evidence import ProofRechecker
from verifier.quorum import combined_detection, load_votes, read_verifiers, tally, threshold
from verifier.subject import proof_subject
from verifier.vote import Vote, check_signature, read_vote, sign_vote, write_vote


def subject_of(path: Path):
    with ProofReader(path) as r:
        return proof_subject(r)


def keys_of(verifiers_file: Path) -> list[bytes]:
    return read_verifiers(verifiers_file)


def byzantine(proof: Path, verifier_keys, lie: str, index: int = 3):
    return lying_vote(proof, load_signing_key(verifier_keys[index][0]), lie)


def reasons(result) -> list[str]:
    return [i.reason for i in result.ignored]


@pytest.fixture(scope="module")
def rechecker_for():
    """One re-checker per proof for the module (it loads the data and builds the model once)."""
    held: dict[Path, ProofRechecker] = {}

    def get(proof: Path) -> ProofRechecker:
        if proof not in held:
            held[proof] = ProofRechecker(proof)
        return held[proof]

    yield get
    for r in held.values():
        r.close()


def test_threshold_is_two_f_plus_one_at_three_f_plus_one() -> None:
    assert [threshold(3 * f + 1, f) for f in range(5)] == [1, 3, 5, 7, 9]
    assert threshold(5, 1) == 4  # more verifiers than 3f+1: the intersection of two quorums still exceeds f


def test_honest_votes_carry_what_was_replayed(honest_votes, honest_raw_proof) -> None:
    for sv in honest_votes:
        check_signature(sv)
        v = sv.vote
        assert v.verdict == "verified" and not v.evidence
        assert v.subject == subject_of(honest_raw_proof)
        assert v.segments == (0, 1, 2, 3) and v.segments_total == 4 and v.segments_uniform == 4
        assert dict(v.checks)["replay"] is True


def test_rejecting_votes_localise_the_forged_step(forged_votes, one_step_forgery) -> None:
    t = one_step_forgery.info["forged_step"]
    with ProofReader(one_step_forgery.path) as r:
        committed = r.step_state_digests
    for sv in forged_votes:
        (ev,) = sv.vote.evidence
        assert sv.vote.verdict == "rejected"
        assert (ev.kind, ev.unit, ev.start_step, ev.stop_step) == ("replay", "step", t, t + 1)
        assert ev.start_digest == committed[t] and ev.committed == committed[t + 1] and ev.replayed != ev.committed


def test_quorum_accepts_the_honest_proof(honest_votes, honest_raw_proof, verifiers_file) -> None:
    result = tally(subject_of(honest_raw_proof), honest_votes, keys_of(verifiers_file), 1)
    assert result.decision == "accepted" and result.exit_code == 0 and len(result.accepting) == 3
    assert result.detection["union_of_segments_replayed"] == 4 and result.detection["guaranteed"]["f=0.1"] == 1.0


def test_quorum_rejects_the_forgery_on_checked_evidence(forged_votes, one_step_forgery, verifiers_file) -> None:
    rechecker = ProofRechecker(one_step_forgery.path)
    try:
        result = tally(subject_of(one_step_forgery.path), forged_votes, keys_of(verifiers_file), 1, rechecker)
    finally:
        rechecker.close()
    assert result.decision == "rejected" and len(result.confirmed_rejections) == 3
    assert len(result.findings) == 1  # the same evidence from three voters is re-checked once
    assert rechecker.replayed_steps == 6  # regenerate the state after step 25 from checkpoint 2, then step 25


@pytest.mark.parametrize("lie", ["reject-false-evidence", "reject-wrong-digest", "reject-check", "reject-no-evidence"])
def test_a_byzantine_rejection_of_the_honest_proof_changes_nothing(lie, honest_votes, honest_raw_proof,
                                                                   verifier_keys, verifiers_file, rechecker_for) -> None:
    liar = byzantine(honest_raw_proof, verifier_keys, lie)
    result = tally(subject_of(honest_raw_proof), [*honest_votes, liar], keys_of(verifiers_file), 1,
                   rechecker_for(honest_raw_proof))
    assert result.decision == "accepted" and len(result.accepting) == 3
    if lie == "reject-no-evidence":
        assert len(result.unsupported_rejections) == 1 and not result.findings
    else:
        assert reasons(result) == ["false evidence: re-checking refuted every piece of evidence this rejection carries"]
        assert result.findings and not any(f["confirmed"] for f in result.findings)


def test_false_evidence_is_refuted_by_replay_not_by_its_own_word(honest_raw_proof, verifier_keys,
                                                                 rechecker_for) -> None:
    liar = byzantine(honest_raw_proof, verifier_keys, "reject-false-evidence")
    (ev,) = liar.vote.evidence
    finding = rechecker_for(honest_raw_proof).recheck(ev)
    # the evidence names the digests the proof really commits; only the replay shows it false
    assert not finding.confirmed and "replay to the committed digest" in finding.detail
    assert finding.recomputed == ev.committed != ev.replayed


def test_byzantine_acceptances_of_the_forgery_change_nothing(forged_votes, one_step_forgery, verifier_keys,
                                                             verifiers_file, rechecker_for) -> None:
    liar = byzantine(one_step_forgery.path, verifier_keys, "accept")
    result = tally(subject_of(one_step_forgery.path), [forged_votes[0], liar], keys_of(verifiers_file), 1,
                   rechecker_for(one_step_forgery.path))
    assert result.decision == "rejected"  # one checked rejection against the liar's acceptance


def test_one_checked_rejection_overrides_any_number_of_acceptances(forged_votes, one_step_forgery, verifier_keys,
                                                                   verifiers_file, rechecker_for) -> None:
    # three *trusted* verifiers accept (as if they drew no forged segment, or lied): still rejected
    accepting = [byzantine(one_step_forgery.path, verifier_keys, "accept", index=i) for i in (1, 2, 3)]
    result = tally(subject_of(one_step_forgery.path), [forged_votes[0], *accepting], keys_of(verifiers_file), 1,
                   rechecker_for(one_step_forgery.path))
    assert len(result.accepting) == 3 >= result.threshold and result.decision == "rejected"


def test_byzantine_verifiers_never_change_the_outcome(honest_votes, forged_votes, honest_raw_proof, one_step_forgery,
                                                      verifier_keys, verifiers_file, rechecker_for) -> None:
    keys = keys_of(verifiers_file)
    for proof, honest, expected in ((honest_raw_proof, honest_votes, "accepted"),
                                    (one_step_forgery.path, forged_votes, "rejected")):
        for lie in LIES:
            liar = byzantine(proof, verifier_keys, lie)
            assert tally(subject_of(proof), [*honest, liar], keys, 1, rechecker_for(proof)).decision == expected, \
                (proof, lie)


def test_forged_duplicated_unknown_and_foreign_votes_are_ignored(honest_votes, forged_votes, honest_raw_proof,
                                                                 verifier_keys, verifiers_file) -> None:
    subject = subject_of(honest_raw_proof)
    keys = keys_of(verifiers_file)
    a, b = honest_votes[0], honest_votes[1]
    tampered = dataclasses.replace(b, vote=dataclasses.replace(b.vote, segments_uniform=1), source="tampered")
    unknown = sign_vote(dataclasses.replace(a.vote, verifier=bytes(load_signing_key(verifier_keys[4][0]).verify_key)),
                        load_signing_key(verifier_keys[4][0]))
    foreign = dataclasses.replace(forged_votes[2], source="foreign")   # verifier 3's vote on another proof
    duplicate = dataclasses.replace(a, source="copy of v1")
    result = tally(subject, [a, tampered, unknown, foreign, duplicate], keys, 1)
    why = reasons(result)
    assert any(r.startswith("forged") for r in why) and any(r.startswith("unknown verifier") for r in why)
    assert any(r.startswith("a vote on another subject") for r in why) and any(r.startswith("duplicate") for r in why)
    assert result.accepting == [result.accepting[0]] and result.decision == "undecided" and result.exit_code == 1


def test_a_verifier_that_signs_both_verdicts_counts_for_nothing(honest_votes, honest_raw_proof, verifier_keys,
                                                                verifiers_file) -> None:
    flip = byzantine(honest_raw_proof, verifier_keys, "reject-no-evidence", index=0)  # verifier 1 also rejects
    result = tally(subject_of(honest_raw_proof), [*honest_votes, flip], keys_of(verifiers_file), 1)
    assert sum(r.startswith("equivocation") for r in reasons(result)) == 2
    assert len(result.accepting) == 2 and result.decision == "undecided"


def test_too_few_verifiers_for_f_is_an_input_error(honest_votes, honest_raw_proof, verifiers_file) -> None:
    with pytest.raises(InputError, match="3f \\+ 1"):
        tally(subject_of(honest_raw_proof), honest_votes, keys_of(verifiers_file), 2)


def test_evidence_cannot_be_judged_without_the_subject(forged_votes, one_step_forgery, verifiers_file) -> None:
    with pytest.raises(InputError, match="--proof"):
        tally(subject_of(one_step_forgery.path), forged_votes, keys_of(verifiers_file), 1, None)


def test_any_change_to_a_signed_vote_breaks_its_signature(honest_votes, tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    write_vote(honest_votes[0], path)
    assert read_vote(path).vote == honest_votes[0].vote
    doc = json.loads(path.read_text())
    for field, value in (("verdict", "rejected"), ("segments_uniform", 1), ("subject", "00" * 32), ("node", None)):
        changed = json.loads(json.dumps(doc))
        changed["vote"][field] = value
        if changed == doc:
            continue
        path.write_text(json.dumps(changed))
        from pol.errors import BadSignatureError

        with pytest.raises(BadSignatureError):
            check_signature(read_vote(path))


@pytest.mark.parametrize("text", ['{"vote": {}, "signature": "00"}', "not json", '{"vote": 1, "vote": 2}',
                                  '{"vote": {"schema": "pol-vote-v1", "x": NaN}, "signature": ""}', "[]"])
def test_malformed_vote_files_are_ignored_with_a_reason(text, honest_votes, honest_raw_proof, verifiers_file,
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "votes"
    folder.mkdir()
    for i, sv in enumerate(honest_votes):
        write_vote(sv, folder / f"v{i}.json")
    (folder / "junk.json").write_text(text)
    votes, bad = load_votes(folder)
    assert len(votes) == 3 and [b[0] for b in bad] == ["junk.json"] and bad[0][1].startswith("malformed")
    result = tally(subject_of(honest_raw_proof), votes, keys_of(verifiers_file), 1, unreadable=bad)
    assert result.decision == "accepted" and any(i.source == "junk.json" for i in result.ignored)


def _votes_with_draws(template: Vote, draws: list[int], keys) -> list:
    return [sign_vote(dataclasses.replace(template, verifier=bytes(load_signing_key(k).verify_key), segments_total=20,
                                          segments=tuple(range(s)), segments_uniform=s), load_signing_key(k))
            for s, (k, _) in zip(draws, keys)]


def test_combined_detection_probability_states_claimed_and_guaranteed(honest_votes, verifier_keys) -> None:
    votes = [sv.vote for sv in _votes_with_draws(honest_votes[0].vote, [2, 3, 5], verifier_keys)]
    d = combined_detection(votes, f=1)
    # one forged segment of 20 escapes a draw of s with probability 1 - s/20
    assert d["claimed"]["one_forged_segment"] == round(1 - (18 / 20) * (17 / 20) * (15 / 20), 4)
    assert d["guaranteed"]["one_forged_segment"] == round(1 - (18 / 20) * (17 / 20), 4)  # the largest draw dropped
    assert d["union_of_segments_replayed"] == 5 and d["uniform_draws"] == [5, 3, 2]


def test_cli_vote_and_quorum(honest_raw_proof, honest_votes, keys: dict, verifier_keys, verifiers_file,
                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_pol

    def run_cli(args: list[str]) -> tuple[int, str, str]:
        return run_pol(args, capsys)

    folder = tmp_path / "votes"
    folder.mkdir()
    for i, sv in enumerate(honest_votes[:2]):
        write_vote(sv, folder / f"v{i + 1}.json")
    proof = tmp_path / "run.pol.h5"
    shutil.copy(honest_raw_proof, proof)
    code, _, err = run_cli(["verify", str(proof), "--key", str(keys["pub"]), "--vote", str(folder / "v4.json"),
                            "--verifier-key", str(verifier_keys[3][0]), "--segments", "1", "--top-updates", "0"])
    assert code == 0, err
    assert read_vote(folder / "v4.json").vote.segments_uniform == 1
    code, out, err = run_cli(["quorum", "certify", str(folder), "--verifiers", str(verifiers_file), "--f", "1",
                              "--proof", str(proof), "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "accepted" and len(doc["accepting"]) == 3, err
    assert doc["detection_probability"]["uniform_draws"] == [4, 4, 1]
    assert doc["detection_probability"]["guaranteed"]["one_forged_segment"] == 1.0  # a full draw remains
    code, out, _ = run_cli(["quorum", "certify", str(folder), "--verifiers", str(verifiers_file), "--f", "2",
                            "--proof", str(proof)])
    assert code == 2  # 4 verifiers cannot tolerate f = 2
    code, _, err = run_cli(["verify", str(proof), "--vote", str(folder / "v5.json"),
                            "--verifier-key", str(verifier_keys[4][0])])
    assert code == 2 and "--key" in err and not (folder / "v5.json").exists()


def test_evidence_naming_digests_the_proof_does_not_commit_is_refuted(forged_votes, one_step_forgery,
                                                                      rechecker_for) -> None:
    (ev,) = forged_votes[0].vote.evidence
    rechecker = rechecker_for(one_step_forgery.path)
    assert rechecker.recheck(ev).confirmed
    # the same (truly failing) step, but the vote misquotes what the proof commits
    for wrong in (dataclasses.replace(ev, committed=bytes(32)), dataclasses.replace(ev, start_digest=bytes(32))):
        finding = rechecker.recheck(wrong)
        assert not finding.confirmed and "does not commit" in finding.detail


def test_untrusted_json_is_parsed_strictly() -> None:
    from verifier.untrusted_json import DocumentError, loads

    assert loads('{"a": 1}', "doc") == {"a": 1}
    for text in ('{"a": 1, "a": 2}', '{"a": NaN}', '{"a": Infinity}', '[1]', b'\xff'):
        with pytest.raises(DocumentError):
            loads(text, "doc")
