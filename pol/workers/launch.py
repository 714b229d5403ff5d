"""Run a federated job on this machine: N + 1 processes of :mod:`pol.workers.node`, with the
same ``env://`` rendezvous torchrun uses (MASTER_ADDR=127.0.0.1 and a free port)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LaunchResult:
    coordinator_exit: int | None     # None: the coordinator ran past the timeout and was killed
    worker_exits: dict[int, int | None]
    seconds: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(config_path: str | os.PathLike[str], workers: int, *, timeout_s: float = 3600.0,
                 grace_s: float = 10.0, threads: int = 1, python_path: list[str] | None = None) -> LaunchResult:
    """Start rank 0 and ranks 1..workers; wait for the coordinator, then give the workers
    ``grace_s`` to exit before ending them (a hung worker is killed here, not waited for)."""
    world = workers + 1
    port = free_port()
    cwd = os.getcwd()
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "OMP_NUM_THREADS": str(threads),
            "PYTHONPATH": os.pathsep.join(p for p in (cwd, *(python_path or []), os.environ.get("PYTHONPATH", ""))
                                          if p)}
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "pol.workers.node", "--config", str(Path(config_path))],
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}, stdin=subprocess.DEVNULL)
             for r in range(world)]
    try:
        coordinator_exit: int | None = procs[0].wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        coordinator_exit = None
    end = time.monotonic() + grace_s
    exits: dict[int, int | None] = {}
    for r, p in enumerate(procs[1:], start=1):
        try:
            exits[r] = p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            exits[r] = None
    for p in procs:  # only the processes started here
        if p.poll() is None:
            p.kill()
            p.wait()
    return LaunchResult(coordinator_exit, exits, time.perf_counter() - started)
