"""The coordinator's gate, in-process: honest rounds are admitted, and every attack and every
malformed submission is rejected by the check that names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from pol.hashing import weights_digest
from pol.workers.admission import BASELINE_CHECKS, Gate
from scripts.attacks_workers import ATTACKS, FAILURES


def _judge(plan4, trainer, ctx, raw: bytes, **kw):
    return Gate(plan4, trainer).judge(raw, ctx.worker, ctx.round, ctx.global_weights, ctx.global_digest, **kw)


def test_honest_rounds_replay_bitwise_and_are_admitted(plan4, trainer, make_ctx) -> None:
    ctx = make_ctx(1)
    first = ctx.honest()
    for worker in (1, 2):
        c = make_ctx(worker)
        verdict = _judge(plan4, trainer, c, c.prove_result(c.honest()))
        assert verdict.accepted and verdict.replayed and verdict.check is None
    later = make_ctx(3, round_index=2, weights=first.end_weights)
    assert _judge(plan4, trainer, later, later.prove_result(later.honest())).accepted


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_rejected_by_replay(plan4, trainer, make_ctx, name: str) -> None:
    attack = ATTACKS[name]
    memory: dict = {}
    ctx = make_ctx(4, 0, memory=memory)
    raw = attack(ctx)
    if not attack.malicious_in(0):  # the stale attacker trains honestly in round 0, then replays it
        assert _judge(plan4, trainer, ctx, raw).accepted
        nxt = {k: v + np.float32(0.01) if v.dtype.kind == "f" else v for k, v in ctx.global_weights.items()}
        ctx = make_ctx(4, 1, weights=nxt, memory=memory)
        raw = attack(ctx)
    verdict = _judge(plan4, trainer, ctx, raw)
    assert not verdict.accepted
    assert verdict.check == "replay", verdict.reason
    assert verdict.evidence["claimed_end_weights"] != verdict.evidence["replayed_end_weights"]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_baseline_checks_alone_let_every_attack_through(plan4, trainer, make_ctx, name: str) -> None:
    """What an ordinary federated server checks (signature, shapes) does not see these attacks."""
    memory: dict = {}
    ctx = make_ctx(4, 0, memory=memory)
    raw = ATTACKS[name](ctx)
    assert _judge(plan4, trainer, ctx, raw, checks=BASELINE_CHECKS, replay=False).accepted


@pytest.mark.parametrize("name, check, reason", [
    ("malformed-garbage", "format", "malformed round proof"),
    ("malformed-truncated", "format", "malformed round proof"),
    ("malformed-shape", "tensors", "expected float32"),
    ("malformed-nan", "tensors", "not finite"),
    ("malformed-signature", "signature", "does not verify"),
    ("malformed-impersonation", "identity", "sent a round proof of worker"),
])
def test_malformed_submissions_are_rejected_with_a_reason(plan4, trainer, make_ctx, name: str, check: str,
                                                          reason: str) -> None:
    ctx = make_ctx(3)
    verdict = _judge(plan4, trainer, ctx, FAILURES[name](ctx))
    assert not verdict.accepted and verdict.check == check and reason in verdict.reason


def test_protocol_checks_catch_replayed_and_misdirected_proofs(plan4, trainer, make_ctx) -> None:
    ctx0 = make_ctx(2, 0)
    old = ctx0.prove_result(ctx0.honest())
    ctx1 = make_ctx(2, 1, weights=ctx0.honest().end_weights)
    assert _judge(plan4, trainer, ctx1, old).check == "identity"          # last round's proof, resent
    other_start = make_ctx(2, 0, weights={k: v * 2 for k, v in ctx0.global_weights.items()})
    assert _judge(plan4, trainer, ctx0, other_start.prove_result(other_start.honest())).check == "start"
    wrong_batches = ctx0.prove_result(ctx0.trainer.run(ctx0.global_weights, 2, 0, indices=ctx0.indices[::-1]))
    assert _judge(plan4, trainer, ctx0, wrong_batches).check == "schedule"


def test_one_flipped_bit_in_the_end_weights_fails_replay(plan4, trainer, make_ctx) -> None:
    ctx = make_ctx(1)
    result = ctx.honest()
    weights = {k: v.copy() for k, v in result.end_weights.items()}
    name = sorted(weights)[0]
    weights[name].view(np.uint32).flat[0] ^= 1
    raw = ctx.prove(weights, end_state_digest=result.end_state_digest)
    verdict = _judge(plan4, trainer, ctx, raw)
    assert verdict.check == "replay"
    assert _judge(plan4, trainer, ctx, raw, replay=False).accepted  # only replay can see it


def test_sampled_policy_admits_what_it_does_not_replay(plan4, trainer, make_ctx) -> None:
    ctx = make_ctx(4)
    raw = ATTACKS["model-replacement"](ctx)
    assert _judge(plan4, trainer, ctx, raw, replay=False).accepted
    assert not _judge(plan4, trainer, ctx, raw, replay=True).accepted


def test_replay_is_bitwise_on_a_model_with_batchnorm_and_dropout(wk_keys) -> None:
    from pol.keys import load_signing_key
    from pol.tasks import load_data, seeded_weights
    from pol.workers.behaviour import RoundContext
    from pol.workers.config import RunSpec
    from pol.workers.coordinator import build_plan
    from pol.workers.local import LocalTrainer

    keys = {w: bytes(load_signing_key(wk_keys / f"worker{w}.key").verify_key) for w in (1, 2)}
    plan = build_plan(RunSpec(out="x.h5", task="digits-cnn", rounds=1, local_steps=3), keys, keys[1], "cpu")
    data = load_data("digits-cnn").train
    weights = seeded_weights("digits-cnn", {}, plan.seed)
    ctx = RoundContext(plan, 2, 0, weights, weights_digest(weights), LocalTrainer(plan, data),
                       load_signing_key(wk_keys / "worker2.key"))
    raw = ctx.prove_result(ctx.honest())
    verdict = Gate(plan, LocalTrainer(plan, data)).judge(raw, 2, 0, weights, weights_digest(weights))
    assert verdict.accepted and verdict.replayed


def test_a_worker_on_another_stack_is_refused_at_registration() -> None:
    from pol.envinfo import environment_fingerprint
    from pol.workers.coordinator import environment_problem

    own = environment_fingerprint("cpu")
    assert environment_problem(dict(own), own) is None
    assert "threads" in environment_problem({**own, "threads": own["threads"] + 1}, own)
    assert "torch" in environment_problem({**own, "torch": "1.0"}, own)
    assert "no environment" in environment_problem(None, own)


def test_an_honest_worker_refuses_a_plan_that_does_not_commit_its_key_and_data(plan4, wk_keys) -> None:
    import dataclasses

    import torch
    from torch.utils.data import TensorDataset

    from pol.errors import InputError
    from pol.keys import load_signing_key, sign
    from pol.tasks import load_data
    from pol.workers.plan import PLAN_DOMAIN
    from pol.workers.worker import check_plan

    coordinator = load_signing_key(wk_keys / "coordinator.key")
    data = load_data("digits-mlp").train
    key1 = bytes(load_signing_key(wk_keys / "worker1.key").verify_key)
    signature = sign(coordinator, PLAN_DOMAIN, plan4.to_bytes())
    check_plan(plan4, signature, 1, key1, data)                                   # its own plan: accepted
    with pytest.raises(InputError, match="another key"):
        check_plan(plan4, signature, 1, bytes(load_signing_key(wk_keys / "worker2.key").verify_key), data)
    x, y = data.tensors
    with pytest.raises(InputError, match="data commitment"):
        check_plan(plan4, signature, 1, key1, TensorDataset(x, torch.roll(y, 1)))
    bad_shard = dataclasses.replace(plan4, workers=[dataclasses.replace(plan4.workers[0], shard_root="00" * 32),
                                                    *plan4.workers[1:]])
    with pytest.raises(InputError, match="shard root"):
        check_plan(bad_shard, sign(coordinator, PLAN_DOMAIN, bad_shard.to_bytes()), 1, key1, data)
    from pol.errors import BadSignatureError

    with pytest.raises(BadSignatureError):
        check_plan(bad_shard, signature, 1, key1, data)                           # not what the coordinator signed
