"""``pol train --resume``: a killed recording continues from its last flushed checkpoint and verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_runner import run_pol

from pol.errors import InputError
from pol.partial import partial_path
from pol.proof_file import ProofReader

ROOT = Path(__file__).resolve().parents[2]


def _killed_run(out: Path, key: Path, *, steps: int, every: int, die_at: int, anchor: int | None = None) -> None:
    """Train in a subprocess that dies (no cleanup) right after step ``die_at``."""
    script = textwrap.dedent(f"""
        import os, torch, pol
        from pol.runner import train_task
        torch.set_num_threads(1)
        orig = pol.Recorder._after_step
        def after(self, *a):
            orig(self, *a)
            if self.step == {die_at}:
                self._writer.drain()
                os._exit(9)
        pol.Recorder._after_step = after
        train_task({str(out)!r}, {str(key)!r}, task="digits-mlp", steps={steps}, every={every}, seed=3,
                   anchor_every={anchor!r}, overwrite=False)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 9, res.stderr


@pytest.mark.parametrize("anchor", [None, 3])
def test_killed_run_resumes_and_verifies(keys: dict, tmp_path: Path, anchor: int | None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.pol.h5"
    _killed_run(out, keys["key"], steps=30, every=3, die_at=17, anchor=anchor)
    with ProofReader(partial_path(out)) as r:
        assert r.final is None and r.num_checkpoints == 6  # steps 0, 3, ..., 15 flushed
    code, doc = _json(["train", "--resume", "--out", out, "--key", keys["key"]], capsys)
    # full: restarts from checkpoint 5 (step 15); compact (anchors every 3rd): from checkpoint 3 (step 9)
    assert code == 0 and doc["resumed_from_step"] == (15 if anchor is None else 9), doc
    assert out.exists() and not partial_path(out).exists()
    code, report = _json(["verify", out, "--key", keys["pub"], "--segments", "3", "--seed", "1"], capsys)
    assert code == 0 and report["verdict"] == "verified", report["checks"]


def _json(args: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    import json

    code, out, err = run_pol([*args, "--json"], capsys)
    assert out.strip(), err
    return code, json.loads(out)


def test_resume_refuses_another_signer(keys: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.pol.h5"
    _killed_run(out, keys["key"], steps=12, every=3, die_at=7)
    before = partial_path(out).read_bytes()
    code, _, err = run_pol(["train", "--resume", "--out", out, "--key", keys["other_key"]], capsys)
    assert code == 2 and "resume with the key that signed the plan" in err
    assert partial_path(out).read_bytes() == before and not out.exists()


def test_resume_restarts_before_a_checkpoint_that_does_not_hash(keys: dict, tmp_path: Path) -> None:
    import h5py

    from pol.resume import restart_point

    out = tmp_path / "run.pol.h5"
    _killed_run(out, keys["key"], steps=12, every=3, die_at=10, anchor=None)
    with h5py.File(partial_path(out), "r+") as f:  # as if the kill had torn checkpoint 3's data
        blob = f["checkpoints/000003/deltas"][()]
        blob[-3] ^= 0xFF
        del f["checkpoints/000003/deltas"]
        f["checkpoints/000003"].create_dataset("deltas", data=blob)
    with ProofReader(partial_path(out)) as r:
        try:
            assert restart_point(r) == 2
        except InputError:
            pytest.fail("a damaged last checkpoint must leave the one before it to restart from")


@pytest.mark.slow
def test_twenty_random_kills_then_resume_and_verify(keys: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL at random moments (during training, writing, resuming, renaming), 20 times; every
    restart resumes what the previous process left; the finished proof verifies."""
    out = tmp_path / "run.pol.h5"
    script = textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(False)  # its first call imports torch._dynamo: do it before "ready"
        from pol.partial import partial_path
        from pol.resume import resume
        from pol.runner import train_task
        from pol.tasks import load_data
        load_data("digits-mlp")
        print("ready", flush=True)
        if partial_path({str(out)!r}).exists():
            resume({str(out)!r}, {str(keys['key'])!r})
        else:
            train_task({str(out)!r}, {str(keys['key'])!r}, task="digits-mlp", steps=3000, every=4, seed=5, overwrite=False)
    """)
    rng = random.Random(13)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kills, resumed_with_progress = 0, 0
    while kills < 20 and not out.exists():
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read() if proc.stderr else ""
        if partial_path(out).exists():
            with ProofReader(partial_path(out)) as r:
                resumed_with_progress += r.num_checkpoints > 1
    assert kills == 20 or out.exists()
    assert resumed_with_progress >= 5  # the kills landed in real work, not only in start-up
    if not out.exists():
        code, _, err = run_pol(["train", "--resume", "--out", out, "--key", keys["key"]], capsys)
        assert code == 0, err
    code, report = _json(["verify", out, "--key", keys["pub"], "--segments", "6", "--seed", "2"], capsys)
    assert code == 0 and report["verdict"] == "verified", report["checks"]
