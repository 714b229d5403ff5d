"""Environment fingerprint: what must match for a replay to be bitwise exact."""

from __future__ import annotations

import platform
from typing import Any

# Fields whose equality makes bitwise replay the expected outcome.
EXACT_FIELDS = ("torch", "device_type", "device_name", "dtype", "threads", "deterministic", "machine")


def environment_fingerprint(device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    name = platform.processor() or platform.machine()
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    return {
        "torch": torch.__version__,
        "numpy": __import__("numpy").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device_type": dev.type,
        "device_name": name,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def exact_mismatches(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the fields that differ and so rule out bitwise replay."""
    return [f for f in EXACT_FIELDS if recorded.get(f) != current.get(f)]


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> CUDA when available, else CPU; an explicit ``cuda`` without CUDA is an input error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from pol.errors import InputError

        raise InputError("--device cuda was requested but CUDA is not available here")
    return requested
