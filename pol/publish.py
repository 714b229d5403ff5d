"""Publishing final weights as safetensors that name the proof they came out of.

Two ways in, one file format::

    rec.publish(model, "model.safetensors")          # at the end of a recorded run
    pol export run.pol.h5 --out model.safetensors      # later, from the proof alone

The file holds the final checkpoint's model tensors named as in ``model.state_dict()`` and
this ``__metadata__`` (strings; not signed — the proof is what is signed)::

    pol.format                 "pol-published-v1"
    pol.proof_digest           "<plan digest hex>:<chain head hex>"
    pol.plan_digest            plan digest (hex)
    pol.chain_head             signed chain head (hex)
    pol.final_weights_digest   the signed final-weights digest (= ``pol digest`` of a float32 file)
    pol.signer_fingerprint     the signer's key fingerprint
    pol.cast                   only when exported with a cast: "bfloat16" | "float16"
    pol.tied                   only for tied weights: JSON {alias: name kept in the file}

safetensors refuses two names sharing storage, so a tied alias is written once, under the
first name in ``state_dict()`` order, and the alias is listed in ``pol.tied``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pol.errors import OutputExistsError, PlanError, ProofFormatError
from pol.hashing import weights_digest
from pol.keys import fingerprint
from pol.proof_file import ProofReader
from pol.state import model_weights
from pol.weights_io import cast_array, numpy_to_torch, shared_storage

PUBLISHED_FORMAT = "pol-published-v1"

__all__ = ["PUBLISHED_FORMAT", "proof_metadata", "final_weights", "export_proof", "publish_model",
           "write_safetensors"]


def proof_metadata(reader: ProofReader) -> dict[str, str]:
    """The metadata naming a finished proof (raises ProofFormatError for an unfinished one)."""
    if reader.final is None:
        raise ProofFormatError(f"{reader.path} has no final record: the run never finished, nothing to publish")
    plan_hex, head_hex = reader.plan_digest.hex(), reader.final["chain_head"].hex()
    return {
        "format": "pt",
        "pol.format": PUBLISHED_FORMAT,
        "pol.proof_digest": f"{plan_hex}:{head_hex}",
        "pol.plan_digest": plan_hex,
        "pol.chain_head": head_hex,
        "pol.final_weights_digest": reader.final["final_weights_digest"].hex(),
        "pol.signer_fingerprint": fingerprint(reader.signer_public_key),
    }


def final_weights(reader: ProofReader) -> dict[str, np.ndarray]:
    """The model part of the proof's last checkpoint, named as in ``model.state_dict()``."""
    last = reader.num_checkpoints - 1
    if last < 0 or not reader.has_checkpoint(last):
        raise ProofFormatError(f"{reader.path}: the final checkpoint is not stored")
    return model_weights(reader.checkpoint_state(last))


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: Mapping[str, str], *,
                      overwrite: bool = False) -> Path:
    """Write torch tensors atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    out = Path(path)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --force (overwrite=True) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def export_proof(proof: str | os.PathLike[str], out: str | os.PathLike[str], *, cast: str | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write the proof's final weights to ``out`` (safetensors); return a summary.

    ``cast`` ("bfloat16" | "float16") casts floating-point tensors (round-to-nearest-even);
    such a file verifies only with the matching ``--allow-cast`` rule.
    """
    with ProofReader(proof) as reader:
        metadata = proof_metadata(reader)
        weights = final_weights(reader)
    if weights_digest(weights).hex() != metadata["pol.final_weights_digest"]:
        raise ProofFormatError(f"{proof}: the final checkpoint does not match the signed final-weights digest")
    tensors = {}
    for name, arr in weights.items():
        dtype = None
        if cast and arr.dtype.kind == "f":
            arr, dtype = cast_array(arr, cast)
        tensors[name] = numpy_to_torch(arr, dtype or str(arr.dtype)).clone()
    if cast:
        metadata["pol.cast"] = cast
    write_safetensors(out, tensors, metadata, overwrite=overwrite)
    return {"out": str(out), "tensors": len(tensors), **metadata}


def publish_model(model: Any, path: str | os.PathLike[str], proof: str | os.PathLike[str], *,
                  overwrite: bool = True) -> dict[str, Any]:
    """Write ``model``'s weights, which must be the proof's signed final weights."""
    with ProofReader(proof) as reader:
        metadata = proof_metadata(reader)
    original = model.state_dict()
    ties = shared_storage(original)           # before any copy to the CPU breaks the sharing
    state = {k: v.detach().to("cpu") for k, v in original.items()}
    arrays = {k: v.numpy() for k, v in state.items()}
    if weights_digest(arrays).hex() != metadata["pol.final_weights_digest"]:
        raise PlanError("the model's weights are not the proof's final weights (was it changed after the last "
                        "recorded step?); publish the model exactly as it was when the recording ended")
    if ties:
        metadata["pol.tied"] = json.dumps(ties, sort_keys=True)
    tensors = {k: v.clone() for k, v in state.items() if k not in ties}
    write_safetensors(path, tensors, metadata, overwrite=overwrite)
    return {"out": str(path), "tensors": len(tensors), **metadata}
