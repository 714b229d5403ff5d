"""Messages between nodes over ``torch.distributed``: the process group, byte exchange, and the
signed point-to-point link a node trains through.

Backend: NCCL when CUDA is available (tensors live on the node's GPU), gloo otherwise. Nothing
here unpickles: byte strings travel as uint8 tensors (never ``all_gather_object``).
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Any

from pol.keys import fingerprint
from pol.split.messages import (
    BACKWARD,
    FORWARD,
    HEADER_SIZE,
    ZERO_DIGEST,
    Header,
    MessageRejected,
    dtype_supported,
    sign_header,
    signature_valid,
    tensor_digest,
)
from pol.split.plan import PipelinePlan
from pol.split.transcript import TranscriptRecorder

MAX_MESSAGE_BYTES = 1 << 30
MAX_EXCHANGE_BYTES = 1 << 22


def pick_backend() -> str:
    """NCCL when this host has a GPU for every local node (``LOCAL_WORLD_SIZE``), else gloo on CPU."""
    import torch
    import torch.distributed as dist

    local_nodes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_nodes and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def init_group(timeout_s: float = 600.0) -> tuple[int, int, str]:
    """Join the process group named by the torchrun environment; returns (rank, world, device)."""
    import torch
    import torch.distributed as dist

    backend = pick_backend()
    device = "cpu"
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), device


def _to_tensor(data: bytes, device: str, size: int | None = None) -> Any:
    """``data`` as a uint8 tensor on ``device``, zero-padded to ``size`` bytes."""
    import torch

    if data and (size is None or size == len(data)):
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    else:
        buf = torch.zeros(size if size is not None else len(data), dtype=torch.uint8)
        if data:
            buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return buf if device == "cpu" else buf.to(device)


def _to_bytes(tensor: Any, size: int | None = None) -> bytes:
    arr = tensor.cpu().numpy()
    return bytes(arr[:size].tobytes() if size is not None else arr.tobytes())


def all_gather_bytes(data: bytes, device: str, limit: int = MAX_EXCHANGE_BYTES) -> list[bytes]:
    """Every rank's byte string, in rank order."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    if any(n < 0 or n > limit for n in lengths):
        raise MessageRejected(f"a node announced {max(lengths)} bytes for the plan exchange (limit {limit})")
    width = max(lengths + [1])
    mine = _to_tensor(data, device, width)
    out = [torch.zeros(width, dtype=torch.uint8, device=device) for _ in range(world)]
    dist.all_gather(out, mine)
    return [_to_bytes(t, n) for t, n in zip(out, lengths)]


def broadcast_bytes(data: bytes | None, src: int, device: str, limit: int = MAX_EXCHANGE_BYTES) -> bytes:
    import torch
    import torch.distributed as dist

    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, src)
    n = int(size.item())
    if n < 0 or n > limit:
        raise MessageRejected(f"node {src} announced {n} bytes for the plan (limit {limit})")
    buf = _to_tensor(data or b"", device, n) if data is not None else torch.zeros(n, dtype=torch.uint8, device=device)
    dist.broadcast(buf, src)
    return _to_bytes(buf)


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


class DistLink:
    """The point-to-point link of one node: every sent tensor gets a signed header, every received
    one is checked (fields, the sender's signature under its plan key, the digest) before use.

    ``key=None`` is the *bare* link (benchmarks): headers carry only the shape, nothing is hashed,
    signed, checked or recorded.
    """

    def __init__(self, plan: PipelinePlan, rank: int, device: str, key: Any | None,
                 recorder: TranscriptRecorder | None):
        from nacl.signing import VerifyKey

        self.plan, self.rank, self.device = plan, rank, device
        self.key, self.recorder = key, recorder
        self.plan_digest = plan.digest()
        self._verify_keys = {r: VerifyKey(plan.public_key(r)) for r in range(plan.num_nodes)}
        self._pending: list[tuple[Any, Any]] = []

    @property
    def signed(self) -> bool:
        return self.key is not None

    # -- sending ----------------------------------------------------------------------------
    def make_header(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> Header:
        receiver = self.plan.stage_node(sender_stage + (1 if direction == FORWARD else -1))
        digest = ZERO_DIGEST
        if self.signed:
            digest = tensor_digest(tensor.numpy() if tensor.device.type == "cpu" else tensor.cpu().numpy())
        header = Header(self.plan_digest, step, micro_batch, direction, sender_stage, self.rank, receiver, digest,
                        str(tensor.dtype).removeprefix("torch."), tuple(int(d) for d in tensor.shape))
        return sign_header(header, self.key) if self.signed else header

    def record_sent(self, header: Header) -> None:
        if self.recorder is not None:
            self.recorder.sent(header.to_bytes())

    def send(self, direction: int, step: int, micro_batch: int, sender_stage: int, tensor: Any) -> None:
        tensor = tensor.detach().contiguous()
        header = self.make_header(direction, step, micro_batch, sender_stage, tensor)
        self.record_sent(header)
        self.transmit(header, tensor)

    def transmit(self, header: Header, tensor: Any) -> None:
        """Put the header and the tensor on the wire (asynchronously; :meth:`end_step` waits)."""
        import torch.distributed as dist

        wire = _to_tensor(header.to_bytes(), self.device)
        self._pending.append((dist.isend(wire, header.receiver_node), wire))
        self._pending.append((dist.isend(tensor, header.receiver_node), tensor))

    # -- receiving --------------------------------------------------------------------------
    def _reject(self, peer: int, what: str, reason: str) -> MessageRejected:
        fpr = fingerprint(self.plan.public_key(peer))
        return MessageRejected(f"node {self.rank} rejected the {what}: {reason}; the sender is node {peer} "
                               f"(plan key {fpr[:16]}); the run stops")

    def recv(self, direction: int, step: int, micro_batch: int, sender_stage: int) -> Any:
        import torch
        import torch.distributed as dist

        peer = self.plan.stage_node(sender_stage)
        what = f"{'activation' if direction == FORWARD else 'gradient'} from stage {sender_stage} " \
               f"at step {step}, micro-batch {micro_batch}"
        wire = torch.empty(HEADER_SIZE, dtype=torch.uint8, device=self.device)
        dist.recv(wire, peer)
        raw = _to_bytes(wire)
        try:
            header = Header.from_bytes(raw)
        except ValueError as exc:
            raise self._reject(peer, what, str(exc)) from None
        expected = (step, micro_batch, direction, sender_stage)
        if header.key != expected or header.sender_node != peer or header.receiver_node != self.rank:
            raise self._reject(peer, what, f"its header names {header.describe()} to node {header.receiver_node}")
        if not dtype_supported(header.dtype) or any(d <= 0 for d in header.shape) or \
                math.prod(header.shape) * 8 > MAX_MESSAGE_BYTES:
            raise self._reject(peer, what, f"unsupported tensor {header.dtype}{list(header.shape)}")
        payload = torch.empty(header.shape, dtype=_torch_dtype(header.dtype), device=self.device)
        incoming = dist.irecv(payload, peer)   # the signature is checked while the tensor arrives
        if self.signed:
            if header.plan_digest != self.plan_digest:
                raise self._reject(peer, what, "its header names another pipeline plan")
            if not signature_valid(header, self._verify_keys[peer]):
                raise self._reject(peer, what, "the header's signature does not verify under the sender's plan key")
        incoming.wait()
        if self.signed:
            arr = payload.numpy() if payload.device.type == "cpu" else payload.cpu().numpy()
            if tensor_digest(arr) != header.digest:
                raise self._reject(peer, what, "the tensor's digest differs from the digest its sender signed")
            if self.recorder is not None:
                self.recorder.received(raw, arr)
        return payload

    def end_step(self, step: int) -> None:
        for work, _ in self._pending:
            work.wait()
        self._pending.clear()


__all__ = ["DistLink", "init_group", "pick_backend", "all_gather_bytes", "broadcast_bytes", "BACKWARD", "FORWARD"]
