"""Spawn the nodes of a pipeline as local processes (``pol split train``, tests, benchmarks).

Each node is ``python -m <module>`` with the torchrun environment set (rendezvous on
127.0.0.1 at a free port), exactly what ``torchrun --nproc-per-node N -m pol.split.node``
gives it. When a node fails, the others are given a moment to fail on their own (they lose
their peer) and are then terminated; the node that failed *first* is reported as the cause.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pol.errors import PolError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeOutcome:
    rank: int
    returncode: int
    stdout: str
    stderr: str
    ended_at: float
    result: dict[str, Any] | None = None

    @property
    def error_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("pol split node") or "Error" in ln]
        return lines[-1] if lines else (self.stderr.strip().splitlines() or [f"exit code {self.returncode}"])[-1]


@dataclass
class LaunchResult:
    outcomes: list[NodeOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.returncode == 0 for o in self.outcomes)

    @property
    def first_failure(self) -> NodeOutcome | None:
        failed = [o for o in self.outcomes if o.returncode != 0]
        return min(failed, key=lambda o: o.ended_at) if failed else None

    @property
    def results(self) -> list[dict[str, Any]]:
        return [o.result for o in self.outcomes if o.result is not None]


class SplitRunFailed(PolError):
    """A node stopped the run; the message names it and quotes its error."""


def launch_local(args: list[str], num_nodes: int, *, module: str = "pol.split.node",
                 per_rank_args: dict[int, list[str]] | None = None, timeout: float | None = None,
                 grace: float = 2.0, env: dict[str, str] | None = None) -> LaunchResult:
    """Run ``num_nodes`` processes of ``python -m module args`` as one torch.distributed job."""
    from pol.split.node import RESULT_PREFIX

    port = free_port()
    procs: list[tuple[int, subprocess.Popen[bytes], Any, Any]] = []
    base_env = {**os.environ, **(env or {}), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "WORLD_SIZE": str(num_nodes), "LOCAL_WORLD_SIZE": str(num_nodes), "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1"}
    root = str(Path(__file__).resolve().parents[2])
    base_env["PYTHONPATH"] = root + (os.pathsep + base_env["PYTHONPATH"] if base_env.get("PYTHONPATH") else "")
    for rank in range(num_nodes):
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", module, *args, *((per_rank_args or {}).get(rank, []))]
        env_r = {**base_env, "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0"}
        procs.append((rank, subprocess.Popen(cmd, stdout=out, stderr=err, env=env_r), out, err))
    ended: dict[int, float] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    failed_at: float | None = None
    try:
        while len(ended) < num_nodes:
            now = time.monotonic()
            for rank, proc, _, _ in procs:
                if rank not in ended and proc.poll() is not None:
                    ended[rank] = now
                    if proc.returncode != 0 and failed_at is None:
                        failed_at = now
            if len(ended) == num_nodes:
                break
            if (failed_at is not None and now - failed_at > grace) or (deadline is not None and now > deadline):
                for rank, proc, _, _ in procs:
                    if rank not in ended:
                        proc.terminate()
                for rank, proc, _, _ in procs:
                    if rank not in ended:
                        try:
                            proc.wait(10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        ended[rank] = time.monotonic() + 1e6  # ended by us: never the first failure
                break
            time.sleep(0.02)
    finally:
        for _, proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result = LaunchResult()
    for rank, proc, out, err in procs:
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        out.close()
        err.close()
        parsed = None
        for line in stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                parsed = json.loads(line[len(RESULT_PREFIX):])
        result.outcomes.append(NodeOutcome(rank, proc.returncode, stdout, stderr, ended[rank], parsed))
    return result


def raise_for_failure(result: LaunchResult) -> None:
    first = result.first_failure
    if first is None:
        return
    others = [f"node {o.rank}: {o.error_line}" for o in result.outcomes if o.returncode != 0 and o is not first]
    raise SplitRunFailed(f"node {first.rank} stopped the run: {first.error_line}"
                         + (f" (then {'; '.join(others)})" if others else ""))
