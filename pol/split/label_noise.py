"""Label protection: noise the label owner adds to the gradients it sends, committed in the plan.

The gradient a label owner's head sends upstream, ``dloss/d(its input)``, leaks the labels to the
node that receives it (norm and direction attacks, Li et al. 2022; measured in docs/PRIVACY.md).
With ``--label-noise KIND[:RATIO]`` the head adds Gaussian noise to every gradient it sends, per
micro-batch ``j`` of step ``t`` (rows ``i``, ``d`` values per row):

* ``iso``: ``g_i + ratio * max_k ||g_k|| / sqrt(d) * r_i`` (a noise row's norm is about ``ratio``
  times the micro-batch's largest gradient norm);
* ``max_norm``: ``g_i + sqrt(max(max_k ||g_k||^2 - ||g_i||^2, 0) / d) * r_i`` (equalises the
  expected norms, the norm attack's signal; directions are left alone).

``r`` is a standard normal float32 draw on CPU from a generator seeded by
``tagged_hash("pol-split-label-noise-draw-v1", secret, u64 t, u64 j)`` (first 8 bytes, 63 bits).
The ``secret`` (32 random bytes) is the label owner's: the plan commits only
``tagged_hash("pol-split-label-noise-v1", secret)`` (``extra.label_noise.commitment``), so the
node receiving the noisy gradients cannot regenerate and remove the noise. The label owner keeps
the secret next to its proof (``node<r>.label-noise-secret.json``) and opens it to whoever
verifies *its* stage: that verifier already holds the labels (it replays the loss), so the
opening gives it nothing about the labels it does not have, and its replay reproduces the noisy
sent gradients bitwise. The verifiers of the other nodes never need it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pol.errors import DataUnavailableError, InputError, OutputExistsError, PlanError
from pol.hashing import canonical_json, tagged_hash

KINDS = ("iso", "max_norm")
NOISE_RULE = ("per micro-batch: randn float32 on CPU, generator seed = first 8 bytes (LE, 63 bits) of "
              "tagged_hash('pol-split-label-noise-draw-v1', secret, u64 step, u64 micro_batch)")
_COMMIT_TAG = b"pol-split-label-noise-v1"
_DRAW_TAG = b"pol-split-label-noise-draw-v1"
SECRET_FORMAT = "pol-split-label-noise-secret"
SECRET_BYTES = 32


def parse_option(text: str | None) -> tuple[str, float] | None:
    """``--label-noise`` as given: ``iso``, ``iso:4`` (ratio 1 when omitted), ``max_norm`` (no ratio)."""
    if not text:
        return None
    kind, colon, ratio = text.partition(":")
    if kind not in KINDS:
        raise PlanError(f"--label-noise must be one of {KINDS}, optionally with :RATIO (e.g. iso:1.0), not {text!r}")
    if kind == "max_norm" and colon:
        raise PlanError("--label-noise max_norm takes no ratio (its scale is set by the gradients' norms)")
    try:
        value = float(ratio) if colon else 1.0
    except ValueError:
        raise PlanError(f"--label-noise ratio must be a number, not {ratio!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PlanError(f"--label-noise ratio must be a positive number, not {ratio!r}")
    return kind, value


def commitment(secret: bytes) -> str:
    return tagged_hash(_COMMIT_TAG, bytes(secret)).hex()


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def plan_entry(kind: str, ratio: float, commitment_hex: str) -> dict[str, Any]:
    """What the plan commits (``extra.label_noise``)."""
    return {"kind": kind, "ratio": ratio, "commitment": commitment_hex, "rule": NOISE_RULE}


def validate_entry(entry: Any) -> None:
    """Raise PlanError unless ``entry`` is a well-formed ``extra.label_noise``."""
    if not isinstance(entry, dict) or set(entry) != {"kind", "ratio", "commitment", "rule"}:
        raise PlanError("extra.label_noise must be an object with kind, ratio, commitment and rule")
    ratio = entry["ratio"]
    if entry["kind"] not in KINDS or entry["rule"] != NOISE_RULE:
        raise PlanError(f"extra.label_noise names a kind or noise rule this build does not implement (kinds {KINDS})")
    if not isinstance(ratio, float) or not math.isfinite(ratio) or ratio <= 0:
        raise PlanError("extra.label_noise.ratio must be a positive finite number")
    try:
        ok = len(bytes.fromhex(entry["commitment"])) == 32
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PlanError("extra.label_noise.commitment must be 32 bytes of hex")


def committed(plan: Any) -> dict[str, Any] | None:
    """The plan's ``extra.label_noise``, or None when the plan commits no label noise."""
    return plan.extra.get("label_noise")


@dataclass(frozen=True)
class LabelNoise:
    kind: str
    ratio: float
    secret: bytes

    def draw(self, step: int, micro_batch: int, shape: tuple[int, ...]) -> Any:
        """The standard normal draw of (step, micro-batch), on CPU."""
        import torch

        seed = int.from_bytes(tagged_hash(_DRAW_TAG, self.secret, struct.pack("<QQ", step, micro_batch))[:8],
                              "little") & (2**63 - 1)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)

    def apply(self, grad: Any, step: int, micro_batch: int) -> Any:
        """The gradient actually sent: ``grad`` (rows = examples) plus this step's noise."""
        flat = grad.reshape(len(grad), -1)
        d = flat.shape[1]
        r = self.draw(step, micro_batch, tuple(flat.shape)).to(device=flat.device, dtype=flat.dtype)
        norms = flat.norm(dim=1)
        biggest = norms.max()
        if self.kind == "iso":
            noisy = flat + (self.ratio * biggest / math.sqrt(d)) * r
        else:
            noisy = flat + ((biggest * biggest - norms * norms).clamp_min(0) / d).sqrt()[:, None] * r
        return noisy.reshape(grad.shape)


def for_node(plan: Any, rank: int, secret: bytes | None) -> LabelNoise | None:
    """The noise node ``rank`` adds to what its head sends: None unless the plan commits label
    noise and the node holds the last stage; then the secret is required."""
    entry = committed(plan)
    if entry is None or plan.num_stages - 1 not in plan.node_stages(rank):
        return None
    if secret is None:
        raise DataUnavailableError(f"the plan commits label noise: node {rank} (the label owner) needs its noise "
                                   "secret to run its head")
    return LabelNoise(entry["kind"], float(entry["ratio"]), bytes(secret))


def opening_valid(plan: Any, secret: bytes) -> bool:
    entry = committed(plan)
    return entry is not None and commitment(secret) == entry["commitment"]


# -- the secret file ---------------------------------------------------------------------------

def secret_path(run_dir: str | os.PathLike[str], rank: int) -> Path:
    return Path(run_dir) / f"node{rank}.label-noise-secret.json"


def write_secret(path: str | os.PathLike[str], secret: bytes, *, force: bool = False) -> Path:
    """Write the label owner's secret (owner-readable only)."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(canonical_json({"format": SECRET_FORMAT, "version": 1, "secret": bytes(secret).hex()}) + b"\n")
    return path


def read_secret(path: str | os.PathLike[str]) -> bytes:
    """A secret file (untrusted input): InputError (exit 2) unless it is one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataUnavailableError(f"label-noise secret not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read the label-noise secret {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw[:4096]) if len(raw) <= 4096 else None
        secret = bytes.fromhex(doc["secret"]) if isinstance(doc, dict) and doc.get("format") == SECRET_FORMAT \
            and doc.get("version") == 1 and isinstance(doc.get("secret"), str) else b""
    except (ValueError, UnicodeDecodeError):
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise InputError(f"{path} is not a {SECRET_FORMAT} version 1 file")
    return secret


def secret_for(plan: Any, rank: int, proof_path: str | os.PathLike[str], explicit: str | os.PathLike[str] | None
               ) -> bytes | None:
    """The secret a replay of node ``rank`` needs: None when it needs none; else read from
    ``explicit`` or, by default, the file next to the node's proof (DataUnavailableError if absent)."""
    if committed(plan) is None or plan.num_stages - 1 not in plan.node_stages(rank):
        return None
    path = Path(explicit) if explicit else secret_path(Path(proof_path).parent, rank)
    if not path.exists():
        raise DataUnavailableError(
            f"the plan commits label noise, so replaying node {rank} (the label owner) needs its noise secret, "
            f"which only it can give: pass --label-noise-secret FILE (its {secret_path('.', rank).name}); "
            "no other node needs it")
    return read_secret(path)
