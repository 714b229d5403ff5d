"""The proof file's layout and names (docs/FORMAT.md): what a writer creates and a reader accepts.

The layout is declarative (:mod:`pol.schema`): :func:`layout` is the exact set of members,
attributes, dtypes and shapes of a proof of a given codec and mode; anything else is refused.
"""

from __future__ import annotations

import numpy as np

from pol import codec as _codec
from pol.errors import ProofFormatError
from pol.schema import Attr, Bytes, Dataset, Group, hex32

FORMAT_NAME = "proof-of-learning"
FORMAT_VERSION = 3
MAX_ELEMENTS = 1 << 31
MODES = ("full", "compact")
# Extension points: sections with their own signed layout, read by their own modules.
EXTENSIONS = frozenset({"zk"})

# How a checkpoint is stored. FULL: every tensor. SEEDED: checkpoint 0 of a compact proof,
# its model part coded against the model the plan's seed builds. WITHOUT_OPTIMIZER_STATE: the
# last checkpoint of a compact proof (no replay starts there), with the digest of what it lacks.
FULL, SEEDED, WITHOUT_OPTIMIZER_STATE = "full", "seeded-model", "without-optimizer-state"
STORE_AS = (FULL, SEEDED, WITHOUT_OPTIMIZER_STATE)
BASE, OPTIMIZER_STATE_DIGEST = "base", "optimizer_state_digest"
CHECKPOINT_NAME = r"[0-9]{6}"

_DIGEST_ROWS = Dataset(dtype="uint8", shape=(None, 32))
_CKPT_ATTRS = {"step": Attr(int, check=lambda v: v >= 0, what="a non-negative integer"),
               "keyframe": Attr(bool),
               BASE: Attr(str, required=False, check=lambda v: v == SEEDED, what=f"{SEEDED!r}"),
               OPTIMIZER_STATE_DIGEST: Attr(str, required=False, check=hex32, what="64 hex digits")}
_CKPT_DELTA = Group(attrs=_CKPT_ATTRS, members={n: Bytes(limit=1 << 40) for n in ("index", "deltas", "plain")})
_CKPT_RAW = Group(attrs=_CKPT_ATTRS, any_tree=True)
_RESPONSES = Group(attrs={"kind": Attr(str, check=lambda v: v == "fiat-shamir", what='"fiat-shamir"'),
                         "segments": Attr(str), "steps": Attr(str)},
                   members={"states": Group(pattern=CHECKPOINT_NAME, each=Group(any_tree=True)),
                            "step_states": Group(pattern=r"[0-9]{12}", each=Group(any_tree=True))},
                   optional=frozenset({"states", "step_states"}))

# The ``/zk`` extension (docs/ZK.md, Format): its exact members, dtypes and attribute types are
# part of the proof layout, so a proof whose /zk holds anything else is refused wherever the proof
# is opened, not only by `pol zk verify`. Values (parameters, hex lengths, counts against the
# layout, the signature) are checked by zk.section.read_section.
ZK_SECTION = Group(
    attrs={**{name: Attr(int) for name in ("schema_version", "chunk_size", "scale_bits", "bits", "length")},
           **{name: Attr(str) for name in ("run_id", "dst", "genset_id", "layout", "signer", "signature")}},
    members={"checkpoints": Dataset(dtype="int64", ndim=1), "clipped": Dataset(dtype="int64", ndim=1),
             "commitments": Dataset(dtype="uint8", shape=(None, None, 48)),
             "roots": Dataset(dtype="uint8", shape=(None, 32)), "binding_proofs": Dataset(dtype="uint8", ndim=2)},
)


def layout(codec: str, mode: str) -> Group:
    """The exact layout of a proof of this codec and mode (docs/FORMAT.md, Layout)."""
    final_attrs = {"chain_head": Attr(str, check=hex32, what="64 hex digits"),
                   "final_weights_digest": Attr(str, check=hex32, what="64 hex digits"),
                   "num_checkpoints": Attr(int, check=lambda v: v >= 0, what="a count"),
                   "num_steps": Attr(int, check=lambda v: v >= 0, what="a count"),
                   "finished_at": Attr(str, check=lambda v: len(v) <= 64, what="a date")}
    return Group(
        attrs={"format": Attr(str, check=lambda v: v == FORMAT_NAME, what=repr(FORMAT_NAME)),
               "format_version": Attr(int),
               "mode": Attr(str, check=lambda v: v in MODES, what=" or ".join(MODES)),
               "codec": Attr(str, check=lambda v: v in _codec.CODECS, what=" or ".join(_codec.CODECS))},
        members={
            "plan": Bytes(limit=1 << 24),
            "signer_public_key": Bytes(exact=32),
            "signatures": Group(members={"plan": Bytes(exact=64), "final": Bytes(exact=64)}, optional=frozenset({"final"})),
            "indices": Dataset(dtype="int64", ndim=2),
            "chain": Group(members={"digests": _DIGEST_ROWS, "state_digests": _DIGEST_ROWS,
                                    "steps": Dataset(dtype="int64", ndim=1)}),
            "steps": Group(members={"state_digests": _DIGEST_ROWS}),
            "checkpoints": Group(pattern=CHECKPOINT_NAME, each=_CKPT_RAW if codec == "raw" else _CKPT_DELTA),
            "final": Group(attrs=final_attrs),
            "responses": _RESPONSES,
            "zk": ZK_SECTION,
        },
        optional=frozenset({"final", "steps", "responses"}) | EXTENSIONS,
    )


# Tensors of every checkpoint with a fixed dtype and number of dimensions (pol.state.capture).


RESERVED_TENSORS = {"meta/step": ("int64", 0), "optim/lr": ("float64", 0), "rng/torch_cpu": ("uint8", 1),
                    "rng/torch_cuda": ("uint8", 1)}


def _check_reserved(state: dict[str, np.ndarray], i: int) -> None:
    for name, (dtype, ndim) in RESERVED_TENSORS.items():
        arr = state.get(name)
        if arr is not None and (arr.dtype != np.dtype(dtype) or arr.ndim != ndim):
            raise ProofFormatError(f"checkpoint {i}: {name} must be a {ndim}-D {dtype} tensor, found {arr.ndim}-D {arr.dtype}")


def ckpt_name(i: int) -> str:
    return f"{i:06d}"
