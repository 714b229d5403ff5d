"""Import proofs written by the reference implementation (Jia et al., "Proof-of-Learning:
Definitions and Practice", IEEE S&P 2021, github.com/cleverhans-lab/Proof-of-Learning).

The reference layout is a directory holding::

    model_step_0, model_step_K, model_step_2K, ..., model_step_N   # torch.save({'net': state_dict,
                                                                   #   'optimizer': ..., 'scheduler': ...})
    indices.npy                                                    # (N, batch_size) data indices, step by step
    hash.txt                                                       # SHA-256 of str() of the data set

:func:`import_legacy` converts it into our format. Checkpoints are loaded **only** with
``torch.load(path, weights_only=True, map_location="cpu")``: a pickle that needs anything
beyond tensors and plain containers is refused (:class:`~pol.errors.ProofFormatError`, exit 2)
and never executed. ``indices.npy`` is read with ``allow_pickle=False``.

What a legacy proof cannot give, and how the file says so honestly:

* it has **no signature**. Our format requires one, so the importer signs with a throwaway key
  generated on the spot and discarded; the plan (which that key signs) carries
  ``extra["legacy"] = True`` and ``extra["legacy_unsigned"] = True``. That signature binds
  nothing to any trainer: it proves only that the file was not edited *after import*;
* there is **no plan committed before training**: the "plan" is reconstructed after the fact
  from the checkpoints (optimizer type and hyper-parameters, learning rates, batch size);
* the **batch order is not committed** (``indices.npy`` is a fresh random permutation, not a
  function of a seed), so it cannot be checked against anything;
* the **initial model is not derived from a seed**: ``model_step_0`` cannot be recomputed;
* the **data set is not committed** by a Merkle root over samples: ``hash.txt`` hashes the
  Python ``str()`` of the raw array (truncated with "..." by numpy for large arrays), which a
  verifier cannot recompute from sample digests; it is kept verbatim in ``plan.data``;
* **no per-step RNG state** was recorded: replay is only possible for models whose step uses
  no randomness, or in tolerance mode.

:func:`legacy_limitations` returns these statements for a report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pol.errors import OutputExistsError, ProofFormatError, short_reason

__all__ = ["import_legacy", "legacy_limitations", "is_legacy", "LEGACY_SAMPLER", "load_legacy_checkpoint",
           "LEGACY_UNVERIFIABLE_CHECKS"]

LEGACY_SAMPLER = "legacy-recorded-indices/uncommitted"
LEGACY_STEP_RNG = "legacy: no per-step RNG recorded"
LEGACY_UNKNOWN = "legacy:unknown"
_STEP_FILE = re.compile(r"^model_step_(\d+)$")
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
MAX_CHECKPOINTS = 1_000_000

# Checks of a native proof that a legacy proof cannot pass or fail meaningfully, and why; the
# verifier should report them as "not applicable (legacy)" rather than run them.
LEGACY_UNVERIFIABLE_CHECKS: dict[str, str] = {
    "signer": "legacy proofs are unsigned: the embedded key is a throwaway generated at import",
    "plan_signature": "the plan was reconstructed at import, not signed by the trainer before training",
    "final_signature": "signed at import by a throwaway key: proves only that the file is unchanged since import",
    "data_commitment": "the reference hashes str() of the data array, not ordered sample digests",
    "initialization": "the reference draws the initial model from unseeded RNG; it cannot be recomputed",
    "plan_consistency/batch_order": "indices.npy is an uncommitted random permutation (no seed)",
}


def is_legacy(reader: Any) -> bool:
    return bool(getattr(reader, "legacy", False)) or bool(reader.plan.extra.get("legacy", False))


def legacy_limitations(reader: Any) -> list[str]:
    """Statements for a verification report of a legacy proof (empty for a native proof)."""
    if not is_legacy(reader):
        return []
    extra = reader.plan.extra
    out = [
        "legacy proof (imported from the reference implementation's layout): it is NOT signed by its trainer; "
        "the signature in this file was made at import with a throwaway key and proves nothing about who trained",
        "no plan was committed before training: optimizer, learning rates and batch size were reconstructed "
        "from the checkpoints after the fact",
        "the batch order is not committed (indices.npy is an unseeded permutation): a prover could have chosen it",
        "the initial model is not derived from a seed and cannot be recomputed (initialization unchecked)",
        "the data set is not committed by sample digests; hash.txt (kept in the plan) hashes str() of the array "
        "and cannot be checked against data the verifier holds",
        "no per-step RNG state was recorded: replay is in tolerance mode, and exact only for steps without randomness",
        "model and data code must be named by the verifier (--model, --data): the proof names none",
    ]
    if extra.get("lr_schedule_source") == "reconstructed":
        out.append("the learning-rate schedule was reconstructed from the learning rates stored at checkpoints; "
                   "changes between checkpoints are not known")
    return out


def load_legacy_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(weights_only=True, map_location='cpu')``; anything else is refused (never executed)."""
    import pickle

    import torch

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            ModuleNotFoundError, ImportError, OSError) as exc:
        raise ProofFormatError(f"{path}: refused to load (only tensors and plain containers are accepted; "
                               f"torch.load(weights_only=True) said: {short_reason(exc)})") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("net"), Mapping):
        raise ProofFormatError(f"{path}: expected a dict with 'net' (a state_dict), found {type(obj).__name__}")
    return dict(obj)


def _strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _np(t: Any, what: str) -> np.ndarray:
    import torch

    if not torch.is_tensor(t):
        raise ProofFormatError(f"{what} is not a tensor")
    if t.dtype == torch.bfloat16:
        raise ProofFormatError(f"{what} is bfloat16, which format v2 cannot store")
    return t.detach().to("cpu").contiguous().numpy().copy()


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(e, (int, float)) for e in value)


def _optimizer_type(group: Mapping[str, Any]) -> str:
    if "betas" in group:
        return "AdamW" if group.get("decoupled_weight_decay") else "Adam"
    if "momentum" in group and "nesterov" in group:
        return "SGD"
    if "alpha" in group and "centered" in group:
        return "RMSprop"
    if "lr_decay" in group:
        return "Adagrad"
    raise ProofFormatError(f"cannot tell the optimizer from its settings {sorted(group)}")


def _param_names(net: Mapping[str, Any], count: int, model_spec: str | None) -> list[str]:
    if model_spec:
        from pol.tasks import build_model

        names = [n for n, _ in build_model(model_spec).named_parameters()]
    else:
        names = [k for k in net if not k.endswith(_BUFFER_SUFFIXES)]
    if len(names) != count:
        raise ProofFormatError(f"the optimizer holds {count} parameters but the model has {len(names)}"
                               + ("" if model_spec else "; name the model with --model so parameters can be matched"))
    missing = [n for n in names if n not in net]
    if missing:
        raise ProofFormatError(f"checkpoint lacks parameter(s) {missing[:4]} of the named model")
    return names


def _schedule(first: Mapping[str, Any], lrs: list[tuple[int, float]], num_steps: int) -> tuple[dict[str, Any], str]:
    sched = first.get("scheduler")
    if isinstance(sched, Mapping) and "milestones" in sched and "gamma" in sched and sched.get("base_lrs"):
        milestones = sorted(int(m) for m, c in dict(sched["milestones"]).items() for _ in range(int(c)))
        return ({"kind": "step", "lr": float(sched["base_lrs"][0]), "milestones": milestones,
                 "gamma": float(sched["gamma"])}, "scheduler")
    values = {lr for _, lr in lrs}
    if len(values) == 1:
        return {"kind": "constant", "lr": lrs[0][1]}, "constant"
    table, j = [], 0
    for t in range(num_steps):   # the LR stored at checkpoint step s is the one used from step s on
        while j + 1 < len(lrs) and lrs[j + 1][0] <= t:
            j += 1
        table.append(lrs[j][1])
    return {"kind": "table", "values": table}, "reconstructed"


def import_legacy(src: str | os.PathLike[str], out: str | os.PathLike[str], *, model_spec: str | None = None,
                  data_spec: str | None = None, num_samples: int | None = None, overwrite: bool = False,
                  codec: str = "delta-zstd") -> dict[str, Any]:
    """Convert a reference-layout directory into a legacy proof file; returns a summary."""
    from nacl.signing import SigningKey

    from pol.assemble import assemble_proof
    from pol.plan import Plan, utc_now

    src = Path(src)
    if not src.is_dir():
        raise ProofFormatError(f"{src} is not a directory (expected model_step_N files, indices.npy)")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    steps = sorted(int(m.group(1)) for p in src.iterdir() if (m := _STEP_FILE.match(p.name)) and p.is_file())
    if len(steps) < 2:
        raise ProofFormatError(f"{src} holds {len(steps)} model_step_N file(s); a proof needs at least two")
    if len(steps) > MAX_CHECKPOINTS:
        raise ProofFormatError(f"{src} holds too many checkpoints ({len(steps)})")
    try:
        indices = np.load(src / "indices.npy", allow_pickle=False)
    except FileNotFoundError:
        raise ProofFormatError(f"{src}/indices.npy is missing") from None
    except (ValueError, OSError) as exc:
        raise ProofFormatError(f"{src}/indices.npy is not a plain numpy array ({exc})") from None
    if indices.ndim != 2 or indices.dtype.kind not in "iu" or indices.shape[0] == 0 or (indices < 0).any():
        raise ProofFormatError(f"indices.npy must be a non-negative integer array of shape (steps, batch_size), "
                               f"found {indices.dtype} {indices.shape}")
    num_steps, batch_size = int(indices.shape[0]), int(indices.shape[1])
    every = steps[1] - steps[0]
    expected = [min(i * every, num_steps) for i in range(1 + -(-num_steps // every))] if every > 0 else []
    if steps[0] != 0 or steps != expected:
        raise ProofFormatError(f"checkpoint steps {steps[:6]}... do not follow 0, K, 2K, ..., {num_steps} "
                               f"(K={every}) for the {num_steps} steps in indices.npy")
    hash_txt = None
    if (src / "hash.txt").is_file():
        raw = (src / "hash.txt").read_bytes()[:256]
        hash_txt = raw.decode("ascii", "replace").strip()
    first = load_legacy_checkpoint(src / "model_step_0")
    opt0 = first.get("optimizer")
    if not isinstance(opt0, Mapping) or not opt0.get("param_groups"):
        raise ProofFormatError("model_step_0 has no optimizer state dict")
    if len(opt0["param_groups"]) != 1:
        raise ProofFormatError("the importer supports one optimizer parameter group")
    group0 = dict(opt0["param_groups"][0])
    opt_type = _optimizer_type(group0)
    from pol.optimizers import constructor_keys, optimizer_class

    accepted = constructor_keys(optimizer_class(opt_type))
    hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group0.items()
               if k not in ("lr", "params", "initial_lr") and k in accepted and _jsonable(v)}
    net0 = _strip_prefix(first["net"])
    names = _param_names(net0, len(group0.get("params", [])), model_spec)
    states, lrs = [], []
    for step in steps:
        ck = first if step == 0 else load_legacy_checkpoint(src / f"model_step_{step}")
        net = _strip_prefix(ck["net"])
        if set(net) != set(net0):
            raise ProofFormatError(f"model_step_{step} holds different tensors than model_step_0")
        state = {f"model/{k}": _np(v, f"model_step_{step}: {k}") for k, v in net.items()}
        opt = ck.get("optimizer")
        if not isinstance(opt, Mapping) or not isinstance(opt.get("state"), Mapping) or not opt.get("param_groups"):
            raise ProofFormatError(f"model_step_{step} has no usable optimizer state")
        for idx, per_param in opt["state"].items():
            if not isinstance(idx, int) or not 0 <= idx < len(names) or not isinstance(per_param, Mapping):
                raise ProofFormatError(f"model_step_{step}: optimizer state for unknown parameter {idx!r}")
            for key, value in per_param.items():
                if value is None:
                    continue
                state[f"optim/state/{names[idx]}/{key}"] = (
                    _np(value, f"model_step_{step}: optimizer {key}") if hasattr(value, "detach")
                    else np.asarray(float(value), dtype=np.float64))
        lr = float(opt["param_groups"][0]["lr"])
        lrs.append((step, lr))
        state["optim/lr"] = np.asarray(lr, dtype=np.float64)
        state["meta/step"] = np.asarray(step, dtype=np.int64)
        states.append(state)
    lr_schedule, lr_source = _schedule(first, lrs, num_steps)
    n_samples = int(num_samples) if num_samples is not None else int(indices.max()) + 1
    if indices.max() >= n_samples:
        raise ProofFormatError(f"indices.npy refers to sample {int(indices.max())} of a {n_samples}-sample data set")
    throwaway = SigningKey.generate()
    from pol.step import default_spec

    plan = Plan(
        seed=0,
        nonce="",
        model={"spec": model_spec or LEGACY_UNKNOWN, "kwargs": {}},
        data={"spec": data_spec or LEGACY_UNKNOWN, "kwargs": {}, "num_samples": n_samples, "merkle_root": "",
              "sample_digest": "legacy: none (no per-sample commitment)", "fields": None,
              "legacy_hash_txt": hash_txt},
        optimizer={"type": opt_type, "hparams": hparams,
                   "groups": [{"params": list(names), "lr_scale": 1.0, "hparams": {}}]},
        lr_schedule=lr_schedule,
        step=default_spec(),
        batch_size=batch_size,
        every=every,
        num_steps=num_steps,
        step_digests=False,
        environment={"legacy": True, "device_type": "unknown", "dtype": str(states[0][f"model/{names[0]}"].dtype)},
        signer=bytes(throwaway.verify_key).hex(),
        created_at=utc_now(),
        sampler=LEGACY_SAMPLER,
        step_rng=LEGACY_STEP_RNG,
        extra={"legacy": True, "legacy_unsigned": True, "legacy_source": "jia2021-reference-layout",
               "legacy_directory": src.name, "lr_schedule_source": lr_source,
               "signature_note": "signed at import by a throwaway key; proves nothing about the trainer"},
    )
    assemble_proof(out, plan, states, indices, throwaway, codec=codec, overwrite=overwrite)
    del throwaway
    return {"proof": str(out), "legacy": True, "legacy_unsigned": True, "checkpoints": len(states),
            "steps": num_steps, "every": every, "batch_size": batch_size, "optimizer": opt_type,
            "lr_schedule": lr_schedule["kind"], "lr_schedule_source": lr_source, "num_samples": n_samples,
            "data_hash_txt": hash_txt}
