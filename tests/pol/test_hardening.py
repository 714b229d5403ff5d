"""Small untrusted files, key files, terminal escaping and Ctrl-C (issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import run_pol

from pol.errors import InputError, KeyFileError
from pol.keys import load_verify_key
from pol.smallfiles import parse_json, read_small_file
from pol.terminal import printable

ROOT = Path(__file__).resolve().parents[2]


def _within(seconds: float, fn, *args):  # noqa: ANN001, ANN202
    """``fn(*args)`` in a thread: a read that blocks (a FIFO) fails the test instead of hanging it
    (no signals: the suite runs in xdist workers)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


def test_small_file_reads_refuse_what_is_not_a_small_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    for path, match in ((fifo, "not a regular file"), (zero, "not a regular file"), (tmp_path, "not a regular file"),
                        (loop, "cannot read"), (big, "larger than 100 bytes"), (tmp_path / "none", "not found")):
        with pytest.raises(InputError, match=match):
            _within(10, read_small_file, path, 100, "thing")
    big.write_bytes(b"x" * 100)
    assert read_small_file(big, 100, "thing") == b"x" * 100


def test_json_documents_are_strict() -> None:
    assert parse_json(b'{"a": [1, 2]}', "doc") == {"a": [1, 2]}
    for raw, match in ((b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b'{"a": NaN}', "not valid JSON"),
                       (b'{"a": 1, "a": 2}', "duplicate"), (b"\xff", "not valid JSON")):
        with pytest.raises(InputError, match=match):
            parse_json(raw, "doc")


def test_key_files_must_be_exactly_header_and_lowercase_hex(keys: dict, tmp_path: Path) -> None:
    text = keys["pub"].read_text()
    header, hexkey = text.split("\n")[:2]
    same = {"crlf": text.replace("\n", "\r\n"), "no final newline": text.rstrip("\n")}
    for name, content in same.items():  # line ends only: the same key
        p = tmp_path / f"{name}.pub"
        p.write_bytes(content.encode())
        assert bytes(load_verify_key(p)) == bytes(load_verify_key(keys["pub"])), name
    refused = {"spaces": f"{header}\n{' '.join(hexkey[i:i + 2] for i in range(0, 64, 2))}\n",
               "uppercase": f"{header}\n{hexkey.upper()}\n", "extra line": text + "more\n",
               "vertical tab": text.replace("\n", "\x0b", 1), "short": f"{header}\n{hexkey[:-2]}\n",
               "blank line": f"{header}\n\n{hexkey}\n"}
    for name, content in refused.items():
        p = tmp_path / f"bad-{name}.pub"
        p.write_bytes(content.encode())
        with pytest.raises(KeyFileError):
            load_verify_key(p)


def test_printable_escapes_control_and_reordering_characters() -> None:
    hostile = "done\x1b]0;pwned\x07\x1b[2J\r\nnext\u202etxt.exe\x9b"
    out = printable(hostile)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in out)
    assert "\\x1b]0;pwned\\x07" in out and "\\n" in out and "\\u202e" in out
    assert printable("a\nb\tc", multiline=True) == "a\nb\tc"
    assert printable("x" * 50, limit=10) == "x" * 9 + "…"


def test_cli_errors_and_reports_reach_the_terminal_escaped(honest_proof: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    evil = tmp_path / "evil\x1b]0;pwned\x07.pub"
    code, out, err = run_pol(["verify", honest_proof, "--key", evil], capsys)
    assert code == 2 and "\x1b" not in err and "\x07" not in err and "\\x1b]0;pwned\\x07" in err
    assert len(err.strip().splitlines()) == 1
    import json

    import numpy as np

    from pol.hashing import canonical_json

    proof = tmp_path / "hostile-plan.pol.h5"
    proof.write_bytes(honest_proof.read_bytes())
    with h5py.File(proof, "r+") as f:  # inspect does not verify: any plan string reaches its table
        plan = json.loads(f["plan"][()].tobytes())
        plan["created_at"] = "\x1b]0;pwned\x07\x1b[2J"
        del f["plan"]
        f.create_dataset("plan", data=np.frombuffer(canonical_json(plan), np.uint8))
    code, out, err = run_pol(["inspect", proof], capsys)
    assert code == 0 and "\\x1b]0;pwned\\x07" in out and "\x1b" not in out + err
    from verifier.report import Report

    report = Report(subject="s\x1b[2J")
    report.add("chain", False, "fig\x07", "detail\x1b]0;x\x07\nline two")
    import io

    buf = io.StringIO()
    report.render(buf)
    text = buf.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "line two" in text
    assert len(text.splitlines()) == 4  # header, check, its detail (one line), verdict


def _wait_for(predicate, timeout: float) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _has_child(pid: int) -> bool:
    try:
        return any(Path(f"/proc/{pid}/task/{t}/children").read_text().strip() for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_verify_with_one_line_and_exit_130(honest_proof: Path, keys: dict) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pol", "verify", str(honest_proof), "--key", str(keys["pub"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    # Interrupt once it is at work: its sandboxed reader (a child process) has started.
    assert _wait_for(lambda: _has_child(proc.pid) or proc.poll() is not None, 120)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines() == ["pol: interrupted"], err


def test_ctrl_c_stops_training_leaving_a_readable_partial_proof(keys: dict, tmp_path: Path) -> None:
    from pol.partial import partial_path
    from pol.proof_file import ProofReader

    out = tmp_path / "run.pol.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pol", "train", "--task", "digits-mlp", "--steps", "3000", "--every",
                             "5", "--out", str(out), "--key", str(keys["key"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    partial = partial_path(out)
    assert _wait_for(lambda: proc.poll() is not None or (partial.exists() and partial.stat().st_size > 60_000), 180)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 130, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pol: interrupted: training stopped; the partial proof is")
    assert "pol train --resume" in lines[0] and not out.exists()
    with ProofReader(partial) as r:
        assert r.final is None and r.num_checkpoints >= 1
        assert all(r.stored_state_digest(i) == r.state_digests[i] for i in r.stored_checkpoints)


def test_every_parser_of_untrusted_json_bounds_its_nesting() -> None:
    """A deeply nested document is a format error (exit 2), never a RecursionError, in each
    parser that reads JSON another party wrote (plans, frames, nonces, fraud-proof claims)."""
    import struct

    from certify.pipeline_attestation import _parse_nonces
    from pol.errors import InputError, PolError
    from pol.plan import Plan
    from pol.split.plan import PipelinePlan
    from pol.workers.messages import decode_frame
    from pol.workers.plan import FederatedPlan

    deep = b"[" * 100_000 + b"]" * 100_000
    for parse in (Plan.from_bytes, PipelinePlan.from_bytes, FederatedPlan.from_bytes):
        with pytest.raises(InputError, match="nested too deeply"):
            parse(deep)
    frame_deep = b"[" * 1500 + b"]" * 1500
    with pytest.raises(InputError, match="nested too deeply"):
        decode_frame(struct.pack("<I", len(frame_deep)) + frame_deep)
    with pytest.raises(PolError, match="malformed attestation nonces"):
        _parse_nonces(deep, 3)
