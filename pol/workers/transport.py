"""Byte messages between the coordinator (rank 0) and each worker (ranks 1..N) on
``torch.distributed``: gloo on CPU, NCCL when every local rank has its own CUDA device.

Every worker gets a process group of its own, ``{0, w}``: gloo closes all pairs of a group
when one operation times out, so a hung or crashed worker must not share a group with the
others. A message is two point-to-point tensors: its length (int64) and its bytes (uint8).
Every wait has a deadline; a peer that misses it, dies, or announces an oversized message
raises :class:`PeerLost`, and the caller stops talking to it.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

from pol.errors import PolError, short_reason


class PeerLost(PolError):
    """A peer crashed, timed out, or broke the protocol; its channel is unusable."""


def choose_backend() -> str:
    """``nccl`` when CUDA is present and each local rank can have its own device, else ``gloo``."""
    import torch
    import torch.distributed as dist

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if torch.cuda.is_available() and dist.is_nccl_available() and torch.cuda.device_count() >= local_world:
        return "nccl"
    return "gloo"


@dataclass
class Channel:
    peer: int
    group: Any
    device: str

    def send(self, data: bytes, timeout_s: float) -> None:
        import torch
        import torch.distributed as dist

        length = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        try:
            works = [dist.isend(length, self.peer, group=self.group), dist.isend(payload, self.peer, group=self.group)]
            for w in works:
                w.wait(timeout=_dt.timedelta(seconds=timeout_s))
        except RuntimeError as exc:
            raise PeerLost(f"rank {self.peer}: send failed ({short_reason(exc)})") from None

    def recv(self, timeout_s: float, max_bytes: int) -> bytes:
        import torch
        import torch.distributed as dist

        try:
            length = torch.zeros(1, dtype=torch.int64, device=self.device)
            dist.irecv(length, self.peer, group=self.group).wait(timeout=_dt.timedelta(seconds=timeout_s))
            n = int(length.item())
            if not 0 < n <= max_bytes:
                raise PeerLost(f"rank {self.peer}: announced a message of {n} bytes (limit {max_bytes})")
            payload = torch.empty(n, dtype=torch.uint8, device=self.device)
            dist.irecv(payload, self.peer, group=self.group).wait(timeout=_dt.timedelta(seconds=timeout_s))
        except RuntimeError as exc:
            reason = "timed out" if "timed out" in str(exc).lower() else "connection lost"
            raise PeerLost(f"rank {self.peer}: {reason} ({short_reason(exc)})") from None
        return payload.cpu().numpy().tobytes()


@dataclass
class Network:
    rank: int
    world_size: int
    backend: str
    device: str
    channels: dict[int, Channel]   # coordinator: one per worker; worker: {0: coordinator}


def connect(*, timeout_s: float = 600.0, backend: str | None = None) -> Network:
    """Join the process group named by the environment (``torchrun`` or :mod:`pol.workers.launch`:
    MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = backend or choose_backend()
    device = "cpu"
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=timeout_s))
    groups = {w: dist.new_group([0, w]) for w in range(1, world)}  # every rank creates every group
    if rank == 0:
        channels = {w: Channel(w, g, device) for w, g in groups.items()}
    else:
        channels = {0: Channel(0, groups[rank], device)}
    return Network(rank, world, backend, device, channels)
