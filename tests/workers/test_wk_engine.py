"""Real jobs: a coordinator and 4 worker processes on torch.distributed (gloo)."""

from __future__ import annotations

from pathlib import Path

from wk_jobs import run_job, statuses


def test_replay_verified_rejects_the_attackers_and_admits_every_honest_round(attack_job) -> None:
    launch = attack_job["launch"]
    assert launch.coordinator_exit == 0 and set(launch.worker_exits.values()) == {0}
    st = statuses(attack_job["summary"]["runs"][0])
    assert all(st[(r, w)] == "accepted" for r in range(3) for w in (1, 2))
    assert st[(0, 3)] == st[(0, 4)] == "rejected"                     # model replacement, free-rider
    assert all(st[(r, w)] == "excluded" for r in (1, 2) for w in (3, 4))  # banned after round 0
    checks = {s["check"] for s in attack_job["summary"]["runs"][0]["submissions"] if s["status"] == "rejected"}
    assert checks == {"replay"}


def test_plain_fedavg_in_the_same_job_averages_the_attackers_in(attack_job) -> None:
    st = statuses(attack_job["summary"]["runs"][1])
    assert all(st[(r, w)] == "accepted" for r in range(3) for w in (1, 2, 3, 4))
    verified, fedavg = attack_job["summary"]["runs"]
    assert verified["final_weights_digest"] != fedavg["final_weights_digest"]


def test_the_verified_run_equals_fedavg_over_the_honest_workers(attack_job, wk_keys) -> None:
    """Rejected updates never enter the average: the global model is FedAvg over workers 1 and 2."""
    import numpy as np

    from pol.hashing import weights_digest
    from pol.workers.aggregate import fedavg
    from pol.workers.log import read_log
    from pol.workers.roundproof import decode_round_proof

    log = read_log(attack_job["runs"][0]["out"])
    from pol.tasks import seeded_weights

    weights = seeded_weights("digits-mlp", {}, 0)
    for rnd in log.rounds:
        ends = [decode_round_proof(rnd.submissions[w]).tensors for w in (1, 2)]
        weights = fedavg(weights, ends)
    assert weights_digest(weights) == weights_digest(log.final_weights)
    assert all(np.array_equal(weights[k], log.final_weights[k]) for k in weights)


def test_crashed_hung_malformed_and_oversized_workers_do_not_stop_the_rounds(tmp_path: Path, wk_keys: Path) -> None:
    behaviours = {"2": "malformed-garbage", "3": "crash", "4": "hang", "5": "malformed-oversized"}
    job = run_job(tmp_path, wk_keys, [dict(out=str(tmp_path / "faults.h5"), rounds=3, local_steps=4,
                                           round_timeout_s=15.0, behaviours=behaviours)],
                  workers=5, grace_s=2.0, max_message_bytes=1 << 20)
    launch = job["launch"]
    assert launch.coordinator_exit == 0
    assert launch.worker_exits[3] == 17          # the crash behaviour's os._exit code: a real process died
    assert launch.worker_exits[4] is None        # still hanging when the job ended: killed by the launcher
    st = statuses(job["summary"]["runs"][0])
    assert all(st[(r, 1)] == "accepted" for r in range(3))            # nothing lost for the honest worker
    assert st[(0, 2)] == "rejected" and st[(0, 3)] == st[(0, 4)] == "accepted"
    assert st[(0, 5)] == "missing"                                     # its message was refused unread
    assert st[(1, 3)] == st[(1, 4)] == "missing"
    assert all(st[(2, w)] == "excluded" for w in (2, 3, 4, 5))
    lost = job["summary"]["lost"]
    assert "connection lost" in lost["3"] and "timed out" in lost["4"] and "limit 1048576" in lost["5"]
    rejected = [s for s in job["summary"]["runs"][0]["submissions"] if s["status"] == "rejected"]
    assert [s["check"] for s in rejected] == ["format"]

    from verifier.workers import WorkersVerifyOptions, verify_log

    report = verify_log(tmp_path / "faults.h5", public_key=str(wk_keys / "coordinator.pub"),
                        options=WorkersVerifyOptions(replays=100, seed=0))
    assert report.verdict == "verified", [c for c in report.checks if c.passed is not True]
