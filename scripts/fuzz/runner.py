"""Run one ``pol`` command per case in its own process, with a timeout and a memory limit.

Two ways to start a case, both a separate process per case:

* ``fork`` (default): a server process that has imported ``pol`` (and torch, h5py, numpy) forks
  one child per case, which runs the CLI entry point :func:`pol.cli.main` as ``pol ARGS`` would.
  A crash or a hang kills only that child. Saves the ~2 s interpreter and torch start-up per case.
* ``exec``: each case is a fresh ``python -m pol ARGS`` (slower; exactly what a user runs).

Each child gets its own process group (a timeout kills the sandboxed HDF5 reader it started too),
``RLIMIT_AS`` as its memory limit, no core files, stdin from /dev/null and its stdout and stderr
in files of its case directory. ``wait4`` gives the peak RSS of the case and of every process it
waited for (the sandboxed reader included).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Expectations a case can carry.
ERROR = "error"        # malformed input: exit 2 with a one-line error
REJECT = "reject"      # not what it claims: exit 1 (a check fails) or 2 (refused)
ACCEPT = "accept"      # an honest control: exit 0
CLASSIFY = "classify"  # a bit flip or a re-encoding: exit 0 only where the content nothing reads changed
ANY = "any"            # a command that does not judge (inspect, digest...): any of 0, 1, 2, never a crash
# A --json document is read whole up to this size (then judged: a longer one does not parse, bad_json).
# `pol inspect --json` repeats the signed plan, which a proof may make 16 MiB (docs/FORMAT.md, Limits);
# its JSON re-encoding is of the same order, so 1 MiB cut honest output mid-document.
JSON_STDOUT_LIMIT = 64 << 20
EXPECTED_CODES = {ERROR: {2}, REJECT: {1, 2}, ACCEPT: {0}, CLASSIFY: {0, 1, 2}, ANY: {0, 1, 2}}


@dataclass
class Case:
    """One malformed (or control) input and the command that reads it.

    ``build(case_dir)`` writes the input(s) into the case's directory; ``argv`` runs there.
    ``target``/``origin``: the mutated file and the honest file it came from (bit-flip analysis).
    """

    kind: str
    family: str
    name: str
    argv: list[str]
    expect: str
    build: Callable[[Path], None] | None = None
    target: str | None = None
    origin: Path | None = None
    json_stdout: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Case
    index: int
    code: int | None          # exit status (None: killed by a signal)
    signal: int | None
    timed_out: bool
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    build_error: str | None = None
    case_dir: Path | None = None


class Runner:
    def __init__(self, *, jobs: int = 2, timeout: float = 60.0, memory_mb: int = 4096, mode: str = "fork",
                 env: dict[str, str] | None = None):
        if mode not in ("fork", "exec"):
            raise ValueError("mode must be fork or exec")
        self.jobs, self.timeout, self.memory = max(1, jobs), timeout, memory_mb << 20
        self.mode = mode
        self.env = dict(env or {})
        if mode == "fork":
            _preload()

    def run(self, cases: Iterable[Case], workdir: Path, on_result: Callable[[Outcome], Any]) -> None:
        """Run every case (at most ``jobs`` at a time); ``on_result`` sees each outcome in completion
        order, its case directory still in place; the directory is removed unless it returns true."""
        import shutil

        running: dict[int, tuple[int, Case, Path, float]] = {}
        source: Iterator[tuple[int, Case]] = enumerate(cases)
        exhausted = False
        while True:
            while not exhausted and len(running) < self.jobs:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                index, case = nxt
                case_dir = workdir / f"case-{index:05d}"
                case_dir.mkdir(parents=True, exist_ok=True)
                try:
                    if case.build is not None:
                        case.build(case_dir)
                except Exception as exc:  # a generator that cannot build its input: reported, never run
                    outcome = Outcome(case, index, None, None, False, 0.0, 0.0, "", "", f"{type(exc).__name__}: {exc}",
                                      case_dir)
                    if not on_result(outcome):
                        shutil.rmtree(case_dir, ignore_errors=True)
                    continue
                pid = self._spawn(case, case_dir)
                running[pid] = (index, case, case_dir, time.monotonic())
            if not running:
                return
            reaped = False
            for pid in list(running):
                got, status, usage = os.wait4(pid, os.WNOHANG)
                index, case, case_dir, started = running[pid]
                if got == 0:
                    if time.monotonic() - started > self.timeout:
                        _kill_group(pid)
                        got, status, usage = os.wait4(pid, 0)
                        outcome = self._outcome(case, index, case_dir, started, status, usage, timed_out=True)
                    else:
                        continue
                else:
                    outcome = self._outcome(case, index, case_dir, started, status, usage, timed_out=False)
                _kill_group(pid)  # anything the case left running (never its parent's business)
                del running[pid]
                reaped = True
                if not on_result(outcome):
                    shutil.rmtree(case_dir, ignore_errors=True)
            if not reaped:
                time.sleep(0.005)

    def _outcome(self, case: Case, index: int, case_dir: Path, started: float, status: int, usage: Any,
                 timed_out: bool) -> Outcome:
        wall = time.monotonic() - started
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return Outcome(case, index, code, sig, timed_out, wall, usage.ru_maxrss / 1024.0,
                       _read(case_dir / ".stdout", JSON_STDOUT_LIMIT if case.json_stdout else 1 << 20),
                       _read(case_dir / ".stderr"), None, case_dir)

    def _spawn(self, case: Case, case_dir: Path) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 70
        try:
            os.setpgid(0, 0)
            for res, value in ((resource.RLIMIT_AS, self.memory), (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(res, (value, value))
            os.chdir(case_dir)
            stdin = os.open(os.devnull, os.O_RDONLY)
            out = os.open(".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = os.open(".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            for fd, target in ((stdin, 0), (out, 1), (err, 2)):
                os.dup2(fd, target)
            os.environ.update(self.env)
            os.environ.update(case.env)
            if self.mode == "exec":
                os.execve(sys.executable, [sys.executable, "-m", "pol", *case.argv], dict(os.environ))
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from pol.cli import main

            try:
                main(list(case.argv))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:  # the harness's own failure inside the child: visible, never exit 0
            traceback.print_exc()
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: Path, limit: int = 1 << 20) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _preload() -> None:
    """Import what every case would import, once, before forking (read-only afterwards)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import h5py  # noqa: F401
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(False)  # imports torch._dynamo once, here, not in every case
    import sklearn.datasets  # noqa: F401  (the built-in digits tasks)

    import pol.cli  # noqa: F401
    import verifier.api  # noqa: F401
    import verifier.cli  # noqa: F401
