"""Recorder behaviour: what it commits, what misuse it refuses, what a crash leaves behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import pol
from pol.errors import PlanError
from pol.hashing import state_digest
from pol.partial import partial_path
from pol.proof_file import ProofReader
from pol.sampler import BatchSchedule
from pol.schedule import lr_at


def _loader(batch_size: int = 32) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(pol.load_data("digits-mlp").train, batch_size=batch_size)


def _sgd(p):  # noqa: ANN001
    return torch.optim.SGD(p, lr=0.05, momentum=0.9)


def test_recorded_proof_commits_plan_indices_and_chain(honest_proof: Path) -> None:
    with ProofReader(honest_proof) as r:
        plan = r.plan
        assert plan.num_steps == 40 and plan.every == 10 and r.num_checkpoints == 5
        assert plan.data["num_samples"] == 1500 and len(plan.data["merkle_root"]) == 64
        assert plan.environment["torch"] == torch.__version__
        assert np.array_equal(r.indices(), BatchSchedule(plan.run_seed, 1500, 32).block(0, 40))
        assert r.step_state_digests is not None and len(r.step_state_digests) == 41
        for i in r.stored_checkpoints:
            state = r.checkpoint_state(i)
            assert state_digest(state) == r.state_digests[i]
            assert float(state["optim/lr"]) == lr_at(plan.lr_schedule, max(0, int(state["meta/step"]) - 1))
        assert any(k.endswith("momentum_buffer") for k in r.checkpoint_state(1))
        assert r.final is not None and r.final["num_steps"] == 40


def test_model_not_from_seed_is_refused(tmp_path: Path, keys: dict) -> None:
    rec = pol.Recorder(tmp_path / "p.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp", steps=10)
    model = pol.seeded_model("digits-mlp", {}, seed=1)  # wrong seed
    with pytest.raises(PlanError, match="initial weights"):
        rec.attach(model=model, optimizer=_sgd(model.parameters()), data_loader=_loader())


def test_model_built_from_the_seed_is_accepted(tmp_path: Path, keys: dict) -> None:
    with pol.Recorder(tmp_path / "p.pol.h5", key=keys["key"], every=5, seed=5, task="digits-mlp", steps=5) as rec:
        model = rec.initial_model()  # the run seed: the user's seed, the signer's key and the plan nonce
        m, opt, loader = rec.attach(model=model, optimizer=_sgd(model.parameters()), data_loader=_loader())
        for x, y in loader:
            opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()  # noqa: E702
            if rec.step == 5:
                break
    with ProofReader(tmp_path / "p.pol.h5") as r:
        assert r.final is not None and r.num_checkpoints == 2


def test_lr_scheduler_outside_the_plan_is_refused(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="learning rate was changed"):
        with pol.Recorder(tmp_path / "p.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp", steps=20) as rec:
            m, opt, loader = rec.attach(optimizer=_sgd, data_loader=_loader())
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            for x, y in loader:
                opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()  # noqa: E702
                sched.step()


def test_gradient_accumulation_not_in_the_plan_is_refused(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(PlanError, match="commits 1 forward pass"):
        with pol.Recorder(tmp_path / "p.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp", steps=20) as rec:
            m, opt, loader = rec.attach(optimizer=_sgd, data_loader=_loader())
            for i, (x, y) in enumerate(loader):
                torch.nn.functional.cross_entropy(m(x), y).backward()
                if i % 2 == 1:
                    opt.step(); opt.zero_grad()  # noqa: E702


def test_optimizer_outside_allow_list_is_refused(tmp_path: Path, keys: dict) -> None:
    class MySGD(torch.optim.SGD):
        pass

    with pytest.raises(PlanError, match="not supported"):
        pol.Recorder(tmp_path / "p.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp",
                     steps=5).attach(optimizer=lambda p: MySGD(p, lr=0.1), data_loader=_loader())


def test_process_killed_between_checkpoints_leaves_readable_file(tmp_path: Path, keys: dict) -> None:
    proof = tmp_path / "crash.pol.h5"
    script = textwrap.dedent(f"""
        import os, torch, pol
        rec = pol.Recorder({str(proof)!r}, key={str(keys['key'])!r}, every=5, seed=0, task="digits-mlp", steps=40)
        m, opt, loader = rec.attach(optimizer=lambda p: torch.optim.SGD(p, lr=0.05), data_loader=torch.utils.data.DataLoader(pol.load_data("digits-mlp").train, batch_size=32))
        for x, y in loader:
            opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
            if rec.step == 17:
                rec._writer.drain()
                os._exit(9)   # no cleanup, no close
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 9, res.stderr
    assert not proof.exists()  # only a signed proof is renamed into place (pol.partial)
    with ProofReader(partial_path(proof)) as r:
        assert r.final is None and r.final_signature is None
        assert r.num_checkpoints == 4  # steps 0, 5, 10, 15
        assert r.num_recorded_steps == 15
        assert all(state_digest(r.checkpoint_state(i)) == r.state_digests[i] for i in r.stored_checkpoints)


def test_checkpoints_decode_identically_in_any_order(honest_proof: Path, keys: dict, tmp_path: Path) -> None:
    from pol.assemble import assemble_proof, read_states, read_step_digests
    from pol.keys import load_signing_key

    with ProofReader(honest_proof) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    proof = tmp_path / "kf.pol.h5"
    assemble_proof(proof, plan, states, indices, load_signing_key(keys["key"]), steps, keyframe_every=2)
    order = [4, 1, 3, 3, 0, 2, 4, 1]
    with ProofReader(proof) as r:
        keyframes = [bool(r.checkpoint_attrs(i)["keyframe"]) for i in range(5)]
        assert keyframes == [True, False, True, False, True]
        for i in order:
            assert state_digest(r.checkpoint_state(i)) == r.state_digests[i]


def test_device_option_moves_the_model_before_the_optimizer(tmp_path: Path, keys: dict) -> None:
    with pol.Recorder(tmp_path / "d.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp", steps=5,
                      device="cpu") as rec:
        m, opt, loader = rec.attach(optimizer=_sgd, data_loader=_loader())
        assert rec.plan is not None and rec.plan.environment["device_type"] == "cpu"
        for x, y in loader:
            opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()  # noqa: E702
    rec = pol.Recorder(tmp_path / "e.pol.h5", key=keys["key"], every=5, seed=0, task="digits-mlp", steps=5,
                       device="cpu")
    model = rec.initial_model()
    with pytest.raises(PlanError, match="callable"):
        rec.attach(model=model, optimizer=_sgd(model.parameters()), data_loader=_loader())


def test_fast_step_digest_equals_the_state_digest_of_a_captured_state() -> None:
    """The recorder hashes every step's state through pol.stepdigest (one buffer per half of the state);
    its digest must be the state digest a verifier computes from a captured state, for every optimizer's
    state layout (momentum buffers, Adam moments and step counters, Adagrad accumulators, BatchNorm buffers)."""
    from pol.state import capture, param_names
    from pol.stepdigest import StepHasher, digest_of_snapshot

    for make in (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.Adam(p, lr=1e-3),
                 lambda p: torch.optim.Adagrad(p, lr=0.1)):
        model = pol.seeded_model("digits-cnn", {}, seed=0)
        opt = make(model.parameters())
        names = param_names(model, opt)
        hasher = StepHasher(model, opt, names)
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        for step in range(3):  # before the first step (no optimizer state for SGD) and after
            assert digest_of_snapshot(*hasher.snapshot(step, 0.05)) == state_digest(capture(model, opt, step, names, 0.05))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
