"""The state digest after every step, cheaply: the same value as ``state_digest(capture(...))``.

Committing the state after every step (format 3) must not slow training down. Computing
:func:`pol.hashing.state_digest` on a captured state costs a Python call or two per tensor on the
training thread (the copies) and per-tensor hashing calls on the writer thread, which holds the
interpreter lock long enough to slow a small model's step. Here the canonical record stream of
each half of the state (``pol-state-main-v1`` and ``pol-state-optim-v1``, see
:mod:`pol.hashing`) is built as one contiguous byte buffer per half with a single ``torch.cat``:
the record headers (name, dtype, shape) are constant for a run and prepared once; the tensor
bytes are copied in the same call. The writer thread then hashes two buffers (hashlib releases
the interpreter lock on large buffers). The digest is bit-for-bit the one of the slow path
(tested), so nothing in the format changes.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from typing import Any

import numpy as np

from pol.hashing import OPTIMIZER_STATE, combine_state_digest, record_header
from pol.state import MODEL

_MAIN, _OPTIM = b"pol-state-main-v1", b"pol-state-optim-v1"


def _dtype_name(t: Any) -> str:
    import torch

    return str(torch.empty(0, dtype=t.dtype).numpy().dtype)


class StepHasher:
    """Snapshots of a live model + optimizer as canonical record buffers (see the module docstring)."""

    def __init__(self, model: Any, optimizer: Any, names: list[str]):
        self._model, self._optimizer, self._names = model, optimizer, names
        self._layout: tuple[Any, ...] | None = None
        self._headers: dict[str, list[Any]] = {}
        self._fast = sys.byteorder == "little"

    def _tensors(self, step: int, lr: float) -> list[tuple[str, Any]]:
        import torch

        items: list[tuple[str, Any]] = [(MODEL + k, v.detach()) for k, v in self._model.state_dict().items()]
        params = [p for group in self._optimizer.param_groups for p in group["params"]]
        for idx, p in enumerate(params):
            for key, value in (self._optimizer.state.get(p) or {}).items():
                if torch.is_tensor(value):
                    items.append((f"{OPTIMIZER_STATE}{self._names[idx]}/{key}", value.detach()))
                elif value is not None:
                    items.append((f"{OPTIMIZER_STATE}{self._names[idx]}/{key}", torch.tensor(float(value), dtype=torch.float64)))
        items.append(("optim/lr", torch.tensor(lr, dtype=torch.float64)))
        items.append(("rng/torch_cpu", torch.get_rng_state()))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            items.append(("rng/torch_cuda", torch.cuda.get_rng_state()))
        items.append(("meta/step", torch.tensor(step, dtype=torch.int64)))
        items.sort(key=lambda kv: kv[0])
        return items

    def snapshot(self, step: int, lr: float) -> tuple[Any, Any]:
        """Two uint8 tensors on the CPU: the record streams of the two halves of the state."""
        import torch

        items = self._tensors(step, lr)
        layout = tuple((name, t.dtype, tuple(t.shape)) for name, t in items)
        if layout != self._layout:
            self._layout = layout
            self._headers = {"main": [], "optim": []}
            counts = {"main": 0, "optim": 0}
            for name, t in items:
                half = "optim" if name.startswith(OPTIMIZER_STATE) else "main"
                counts[half] += 1
            for half, domain in (("main", _MAIN), ("optim", _OPTIM)):
                self._headers[half].append(torch.frombuffer(bytearray(domain + struct.pack("<Q", counts[half])),
                                                            dtype=torch.uint8))
            for name, t in items:
                half = "optim" if name.startswith(OPTIMIZER_STATE) else "main"
                header = record_header(name, _dtype_name(t), tuple(int(s) for s in t.shape))
                self._headers[half].append(torch.frombuffer(bytearray(header), dtype=torch.uint8))
        parts: dict[str, list[Any]] = {"main": [self._headers["main"][0]], "optim": [self._headers["optim"][0]]}
        position = {"main": 1, "optim": 1}
        for name, t in items:
            half = "optim" if name.startswith(OPTIMIZER_STATE) else "main"
            parts[half].append(self._headers[half][position[half]])
            position[half] += 1
            data = t.reshape(-1)
            if data.numel():
                parts[half].append(data.contiguous().view(torch.uint8).cpu())
        return torch.cat(parts["main"]), torch.cat(parts["optim"])


def digest_of_snapshot(main: Any, optim: Any) -> bytes:
    """The state digest of a snapshot (run it off the training thread)."""
    return combine_state_digest(hashlib.sha256(np.asarray(main.numpy()).data).digest(),
                                hashlib.sha256(np.asarray(optim.numpy()).data).digest())
