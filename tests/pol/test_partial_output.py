"""Crash-consistent proof output (pol.partial): a locked working file, renamed when signed."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pol.errors import OutputExistsError
from pol.partial import OutputSlot, partial_path
from pol.proof_file import ProofReader, ProofWriter

ROOT = Path(__file__).resolve().parents[2]


def _writer(path: Path, plan, **kw) -> ProofWriter:  # noqa: ANN001
    return ProofWriter(path, plan=plan, plan_signature=b"\0" * 64, public_key=b"\0" * 32, **kw)


def test_a_second_writer_cannot_truncate_a_live_proof(honest_proof: Path, tmp_path: Path) -> None:
    with ProofReader(honest_proof) as r:
        plan = r.plan
    out = tmp_path / "live.pol.h5"
    first = _writer(out, plan)
    partial = partial_path(out)
    before = partial.read_bytes()
    assert len(before) > 0 and not out.exists()  # being written: only the partial file exists
    with pytest.raises(OutputExistsError, match="another process is writing"):
        _writer(out, plan, overwrite=True)       # --force does not break the lock
    assert partial.read_bytes() == before        # and nothing was truncated
    first.close()                                # never finished: stays partial
    assert partial.exists() and not out.exists()
    with pytest.raises(OutputExistsError, match="interrupted run"):
        _writer(out, plan)                       # a leftover partial proof is not overwritten silently
    _writer(out, plan, overwrite=True).close()


def test_only_a_signed_proof_is_renamed_into_place(honest_proof: Path, tmp_path: Path, keys: dict) -> None:
    from pol.assemble import assemble_proof, read_states, read_step_digests
    from pol.keys import load_signing_key

    with ProofReader(honest_proof) as r:
        plan, states, indices, steps = r.plan, read_states(r), r.indices(), read_step_digests(r)
    out = tmp_path / "signed.pol.h5"
    out.write_bytes(b"an older proof")
    with pytest.raises(OutputExistsError):
        assemble_proof(out, plan, states, indices, load_signing_key(keys["key"]), steps)
    assemble_proof(out, plan, states, indices, load_signing_key(keys["key"]), steps, overwrite=True)
    assert not partial_path(out).exists()
    with ProofReader(out) as r:
        assert r.final is not None and r.num_checkpoints == len(states)


def test_resume_slot_requires_a_partial_proof(tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match="no interrupted run"):
        OutputSlot(tmp_path / "x.pol.h5", resume=True)


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("limit", [40_000, 250_000])
def test_file_size_limit_ends_in_one_error_and_a_readable_partial_proof(keys: dict, tmp_path: Path, limit: int) -> None:
    """Disk full and RLIMIT_FSIZE fail the same way (ENOSPC / EFBIG on write): one error line,
    exit 2, and the partial proof as of its last flush (or none, when even its header does not fit)."""
    out = tmp_path / "full.pol.h5"
    proc = subprocess.run([sys.executable, "-m", "pol", "train", "--task", "digits-mlp", "--steps", "40", "--every", "4",
                           "--out", str(out), "--key", str(keys["key"])], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          preexec_fn=lambda: _limit_file_size(limit))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pol: error: cannot write the proof"), proc.stderr
    assert not out.exists()
    partial = partial_path(out)
    if limit < 60_000:
        assert not partial.exists() and "nothing was written" in lines[0]
        return
    assert partial.stat().st_size <= limit
    with ProofReader(partial) as r:
        assert r.final is None and 1 <= r.num_checkpoints < 11
        assert all(r.stored_state_digest(i) == r.state_digests[i] for i in r.stored_checkpoints)
