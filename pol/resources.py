"""Plan fields that drive resources, checked before the work they drive.

A signed plan is still the prover's word: its model kwargs decide how much memory the verifier's
model takes, a built-in data builder's kwargs how much data it generates. Before building either,
the verifier checks the size:

* the model is built on torch's ``meta`` device first (no memory) and its weights must fit in what
  the proof file can hold (the sandboxed reader's byte budget for the file,
  :meth:`pol.untrusted_h5.Limits.byte_budget`): a small file cannot make the verifier allocate
  gigabytes;
* generated data must fit in half of this machine's memory.

Thread counts are checked against the machine's cores in :func:`pol.envinfo.reproduction`.
"""

from __future__ import annotations

import os
from typing import Any

from pol.errors import DataUnavailableError, InputError, PolError


def model_bytes(spec: str, kwargs: dict[str, Any] | None) -> int | None:
    """Bytes of the model's ``state_dict`` (built on the meta device), or None when the builder
    cannot build there (user code that insists on real tensors: then it is built for real)."""
    import torch

    from pol.tasks import build_model

    try:
        with torch.device("meta"):
            model = build_model(spec, kwargs)
        return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))
    except PolError:
        raise
    except Exception:  # noqa: BLE001 - any failure on meta just means "not measurable this way"
        return None


def check_model_size(spec: str, kwargs: dict[str, Any] | None, budget: int) -> None:
    """Refuse a plan whose model is larger than ``budget`` bytes, before building it."""
    size = model_bytes(spec, kwargs)
    if size is not None and size > budget:
        raise InputError(f"the plan's model ({spec!r} with its kwargs) has {size} bytes of weights, more than this "
                         f"proof file can hold ({budget}); refused before building it (POL_LIMIT_BYTES_PER_INPUT_BYTE)")


def machine_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_generated_bytes(nbytes: int, what: str) -> None:
    """Refuse to generate more than half of this machine's memory."""
    limit = machine_memory() // 2
    if nbytes > limit:
        raise DataUnavailableError(f"{what} would take {nbytes} bytes, more than half of this machine's memory "
                                   f"({limit} bytes); refused before generating it")
