"""The HDF5 proof file: writer and reader (see docs/FORMAT.md).

No pickles anywhere: every value is a numeric dataset, a uint8 byte string, or a scalar
attribute. The reader treats the file as untrusted and turns every malformation into
:class:`~pol.errors.ProofFormatError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import OutputExistsError, ProofFormatError, short_reason
from pol.hashing import (
    OPTIMIZER_STATE,
    combine_state_digest,
    contiguous,
    main_state_digest,
    optimizer_state_digest,
    state_digest,
)
from pol.plan import Plan
from pol.schedule import lr_at
from pol.state import MODEL

FORMAT_NAME = "proof-of-learning"
FORMAT_VERSION = 2
MAX_ELEMENTS = 1 << 31
_NUMERIC_KINDS = "fiub"
MODES = ("full", "compact")
# What h5py and numpy raise on a file whose layout is not the one written here (a group where a
# dataset belongs, an attribute of the wrong type...); the reader turns them into ProofFormatError.
_MALFORMED = (KeyError, AttributeError, OSError, ValueError, TypeError, RuntimeError)

# How a checkpoint is stored. FULL: every tensor. SEEDED: checkpoint 0 of a compact proof,
# its model part coded against the model the plan's seed builds. WITHOUT_OPTIMIZER_STATE: the
# last checkpoint of a compact proof (no replay starts there), with the digest of what it lacks.
FULL, SEEDED, WITHOUT_OPTIMIZER_STATE = "full", "seeded-model", "without-optimizer-state"
STORE_AS = (FULL, SEEDED, WITHOUT_OPTIMIZER_STATE)
BASE, OPTIMIZER_STATE_DIGEST = "base", "optimizer_state_digest"


def _bytes_ds(group: Any, name: str, data: bytes) -> None:
    group.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))


def _ckpt_name(i: int) -> str:
    return f"{i:06d}"


class ProofWriter:
    """Appends to a proof file; used from the recorder's background writer thread."""

    def __init__(self, path: str | os.PathLike[str], *, plan: Plan, plan_signature: bytes,
                 public_key: bytes, codec: str = _codec.DEFAULT_CODEC, keyframe_every: int = 50,
                 mode: str = "full", overwrite: bool = False):
        import h5py

        if codec not in _codec.CODECS:
            raise ValueError(f"unknown codec {codec!r}; expected one of {_codec.CODECS}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass overwrite=True (CLI: --force) to replace it")
        self.codec, self.keyframe_every = codec, max(1, keyframe_every)
        self._f = h5py.File(self.path, "w")
        f = self._f
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["mode"] = mode
        f.attrs["codec"] = codec
        _bytes_ds(f, "plan", plan.to_bytes())
        _bytes_ds(f, "signer_public_key", public_key)
        sig = f.create_group("signatures")
        _bytes_ds(sig, "plan", plan_signature)
        # One chunk per segment (k rows): each append writes whole new chunks, so HDF5 never
        # re-compresses and re-allocates a partly filled chunk (which leaks file space).
        batch_size = plan.batch_size
        f.create_dataset("indices", shape=(0, batch_size), maxshape=(None, batch_size), dtype=np.int64,
                         chunks=(max(1, plan.every), batch_size), compression="gzip", shuffle=True)
        chain = f.create_group("chain")
        chain.create_dataset("digests", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(256, 32))
        chain.create_dataset("state_digests", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(256, 32))
        chain.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
        f.create_group("checkpoints")
        self._schedule = plan.lr_schedule
        self._previous: dict[str, np.ndarray] | None = None
        self._previous_step = 0
        self._stored = 0
        f.flush()

    @staticmethod
    def _append(ds: Any, rows: np.ndarray) -> None:
        n = ds.shape[0]
        ds.resize(n + len(rows), axis=0)
        ds[n:] = rows

    def append_indices(self, block: np.ndarray) -> None:
        if len(block):
            self._append(self._f["indices"], np.asarray(block, dtype=np.int64))

    def append_chain(self, step: int, digest: bytes, state_digest: bytes) -> None:
        chain = self._f["chain"]
        self._append(chain["digests"], np.frombuffer(digest, np.uint8)[None])
        self._append(chain["state_digests"], np.frombuffer(state_digest, np.uint8)[None])
        self._append(chain["steps"], np.asarray([step], dtype=np.int64))

    def store_checkpoint(self, index: int, step: int, state: dict[str, np.ndarray], store_as: str = FULL) -> None:
        """Store checkpoint ``index``; ``store_as`` is one of :data:`STORE_AS` (see docs/FORMAT.md)."""
        if store_as not in STORE_AS:
            raise ValueError(f"store_as must be one of {STORE_AS}, not {store_as!r}")
        group = self._f["checkpoints"].create_group(_ckpt_name(index))
        group.attrs["step"] = step
        keyframe = self._stored % self.keyframe_every == 0
        previous = None if keyframe else self._previous
        if store_as == WITHOUT_OPTIMIZER_STATE:
            group.attrs[OPTIMIZER_STATE_DIGEST] = optimizer_state_digest(state).hex()
            state = {k: v for k, v in state.items() if not k.startswith(OPTIMIZER_STATE)}
        if store_as == SEEDED and self.codec != "raw":
            # The model part equals the seeded initial model: code it against that, which a
            # reader rebuilds from the plan (all-zero deltas cost a few bytes).
            group.attrs[BASE] = SEEDED
            keyframe, previous = False, {k: v for k, v in state.items() if k.startswith(MODEL)}
        group.attrs["keyframe"] = keyframe
        if self.codec == "raw":
            for name in sorted(state):
                arr = contiguous(state[name])
                group.create_dataset(name, data=arr, **({"compression": "gzip", "shuffle": True} if arr.size > 16 else {}))
        else:
            lr_sum = 0.0
            if previous is not None and store_as != SEEDED:
                lr_sum = float(sum(lr_at(self._schedule, t) for t in range(self._previous_step, step)))
            encoded = _codec.encode_checkpoint(state, previous, lr_sum)
            for name in ("index", "deltas", "plain"):
                group.create_dataset(name, data=np.frombuffer(getattr(encoded, name), np.uint8))
        self._previous, self._previous_step = state, step
        self._stored += 1

    def set_attr(self, name: str, value: Any) -> None:
        self._f.attrs[name] = value

    def flush(self) -> None:
        self._f.flush()

    def finish(self, *, final_signature: bytes, chain_head: bytes, final_weights_digest: bytes,
               num_checkpoints: int, num_steps: int, finished_at: str) -> None:
        _bytes_ds(self._f["signatures"], "final", final_signature)
        final = self._f.create_group("final")
        final.attrs["chain_head"] = chain_head.hex()
        final.attrs["final_weights_digest"] = final_weights_digest.hex()
        final.attrs["num_checkpoints"] = num_checkpoints
        final.attrs["num_steps"] = num_steps
        final.attrs["finished_at"] = finished_at
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()


class ProofReader:
    """Read-only, validating access to a proof file. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], model_spec: str | None = None):
        """``model_spec`` names the model code for proofs whose model is not built in; it is
        needed only to read checkpoint 0 of a compact proof (coded against the seeded model)."""
        import h5py

        self.path = Path(path)
        self.model_spec = model_spec
        self._seeded: dict[str, np.ndarray] | None = None
        if not self.path.is_file():
            raise ProofFormatError(f"proof file not found: {self.path}")
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise ProofFormatError(f"{self.path} is not a readable HDF5 file ({short_reason(exc)})") from None
        try:
            self._load_header()
        except ProofFormatError:
            self.close()
            raise
        except _MALFORMED as exc:
            self.close()
            raise ProofFormatError(f"{self.path} is malformed: {short_reason(exc)}") from None
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    # -- header -----------------------------------------------------------------------------
    def _load_header(self) -> None:
        f = self.h5
        if f.attrs.get("format") != FORMAT_NAME:
            raise ProofFormatError(f"{self.path} is not a proof-of-learning file (no format marker)")
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise ProofFormatError(f"unsupported format version {version!r}; this build reads {FORMAT_VERSION}")
        self.mode = str(f.attrs.get("mode", "full"))
        if self.mode not in MODES:
            raise ProofFormatError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        self.codec = str(f.attrs.get("codec", "raw"))
        if self.codec not in _codec.CODECS:
            raise ProofFormatError(f"unknown codec {self.codec!r}")
        self.legacy = bool(f.attrs.get("legacy", False))
        self.plan_bytes = self.read_bytes("plan", limit=1 << 24)
        self.plan = Plan.from_bytes(self.plan_bytes)  # refuses non-canonical bytes: the digest is over them
        self.plan_digest = self.plan.digest()
        self.signer_public_key = self.read_bytes("signer_public_key", exact=32)
        self.plan_signature = self.read_bytes("signatures/plan", exact=64)
        self.final_signature = self.read_bytes("signatures/final", exact=64) if "signatures/final" in f else None
        self._node("chain", group=True)
        self.chain_digests = self._uint8_rows("chain/digests")
        self.state_digests = self._uint8_rows("chain/state_digests")
        steps = self._node("chain/steps")
        if steps.ndim != 1 or steps.dtype.kind not in "iu":
            raise ProofFormatError("/chain/steps must be a 1-D integer array")
        self.checkpoint_steps = np.asarray(steps[()], dtype=np.int64)
        n = len(self.chain_digests)
        if len(self.state_digests) != n or len(self.checkpoint_steps) != n:
            raise ProofFormatError("chain datasets have different lengths")
        self.num_checkpoints = n
        ind = self._node("indices")
        if ind.ndim != 2 or ind.dtype.kind not in "iu" or ind.shape[1] != self.plan.batch_size:
            raise ProofFormatError(f"indices must be an integer array of shape (steps, {self.plan.batch_size})")
        self.num_recorded_steps = int(ind.shape[0])
        names = list(self._node("checkpoints", group=True).keys())
        for k in names:
            if not (k.isascii() and k.isdigit() and k == _ckpt_name(int(k))):
                raise ProofFormatError(f"unexpected entry /checkpoints/{k[:40]!r} (checkpoints are named NNNNNN)")
        self.stored_checkpoints = sorted(int(k) for k in names)
        self.final: dict[str, Any] | None = None
        if "final" in f:
            a = self._node("final", group=True).attrs
            self.final = {
                "chain_head": _hex_attr(a, "chain_head"),
                "final_weights_digest": _hex_attr(a, "final_weights_digest"),
                "num_checkpoints": int(a["num_checkpoints"]),
                "num_steps": int(a["num_steps"]),
                "finished_at": str(a.get("finished_at", "")),
            }

    def _node(self, path: str, *, group: bool = False) -> Any:
        """The dataset (or, with ``group``, the group) at ``path``; anything else is malformed."""
        import h5py

        obj = self.h5.get(path)
        if obj is None:
            raise ProofFormatError(f"missing /{path}")
        if not isinstance(obj, h5py.Group if group else h5py.Dataset):
            raise ProofFormatError(f"/{path} must be {'a group' if group else 'a dataset'}")
        return obj

    def read_bytes(self, path: str, *, exact: int | None = None, limit: int = 1 << 20) -> bytes:
        ds = self._node(path)
        if ds.dtype != np.uint8 or ds.ndim != 1:
            raise ProofFormatError(f"/{path} must be a 1-D uint8 byte string")
        if exact is not None and ds.shape[0] != exact:
            raise ProofFormatError(f"/{path} must hold {exact} bytes, found {ds.shape[0]}")
        if ds.shape[0] > limit:
            raise ProofFormatError(f"/{path} is larger than {limit} bytes")
        return bytes(ds[()].tobytes())

    def _uint8_rows(self, name: str) -> list[bytes]:
        ds = self._node(name)
        if ds.dtype != np.uint8 or ds.ndim != 2 or ds.shape[1] != 32:
            raise ProofFormatError(f"/{name} must be uint8 of shape (n, 32)")
        arr = ds[()]
        return [bytes(row.tobytes()) for row in arr]

    # -- body -------------------------------------------------------------------------------
    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.num_recorded_steps if stop is None else stop
        if not 0 <= start <= stop <= self.num_recorded_steps:
            raise ProofFormatError(f"steps {start}..{stop} are outside the {self.num_recorded_steps} recorded")
        return np.asarray(self.h5["indices"][start:stop], dtype=np.int64)

    def has_embedded_response(self) -> bool:
        """True when a non-interactive challenge response is embedded (see verifier.challenge)."""
        return "responses" in self.h5

    def has_checkpoint(self, i: int) -> bool:
        return i in self.stored_checkpoints

    def is_complete(self, i: int) -> bool:
        """Stored with its optimizer state, so a replay can start from it."""
        return self.has_checkpoint(i) and OPTIMIZER_STATE_DIGEST not in self._group(i).attrs

    def stored_state_digest(self, i: int) -> bytes:
        """State digest of stored checkpoint ``i``, to compare with ``state_digests[i]``.

        A checkpoint stored without its optimizer state contributes the digest of what it
        holds, combined with the stored digest of the optimizer state it lacks.
        """
        state = self.checkpoint_state(i)
        attrs = self._group(i).attrs
        if OPTIMIZER_STATE_DIGEST not in attrs:
            return state_digest(state)
        if any(k.startswith(OPTIMIZER_STATE) for k in state):
            raise ProofFormatError(f"checkpoint {i} holds optimizer state yet says it is stored without it")
        try:
            lacking = bytes.fromhex(str(attrs[OPTIMIZER_STATE_DIGEST]))
        except ValueError:
            raise ProofFormatError(f"checkpoint {i}: {OPTIMIZER_STATE_DIGEST} is not hex") from None
        if len(lacking) != 32:
            raise ProofFormatError(f"checkpoint {i}: {OPTIMIZER_STATE_DIGEST} must be 32 bytes")
        return combine_state_digest(main_state_digest(state), lacking)

    def checkpoint_state(self, i: int) -> dict[str, np.ndarray]:
        """Decoded tensors of stored checkpoint ``i``.

        Deltas are decoded forward from the nearest keyframe, or from the last checkpoint
        decoded when that lies in between (reading in ascending order costs one decode each).
        Only the last decoded checkpoint is kept, so memory stays at a few checkpoints.
        """
        if i not in self.stored_checkpoints:
            raise ProofFormatError(f"checkpoint {i} is not stored in this {self.mode} proof")
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        try:
            if self.codec == "raw":
                state = self._decode_raw(i)
            else:
                state = self._decode_forward(i)
        except ProofFormatError:
            raise
        except _MALFORMED as exc:
            raise ProofFormatError(f"checkpoint {i} is malformed: {short_reason(exc)}") from None
        self._cache = (i, state)
        return state

    def _group(self, i: int) -> Any:
        return self._node(f"checkpoints/{_ckpt_name(i)}", group=True)

    def _decode_raw(self, i: int) -> dict[str, np.ndarray]:
        import h5py

        state: dict[str, np.ndarray] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                if obj.dtype.kind not in _NUMERIC_KINDS or obj.size > MAX_ELEMENTS:
                    raise ProofFormatError(f"tensor {name} has an unsupported dtype or size")
                state[name] = np.asarray(obj[()])

        self._group(i).visititems(visit)
        return state

    def _decode_forward(self, i: int) -> dict[str, np.ndarray]:
        order = self.stored_checkpoints
        pos = order.index(i)
        # Walk back to the nearest keyframe, or stop right after the cached checkpoint when it
        # lies before i (a keyframe in between would ignore the cached state anyway).
        resume = order.index(self._cache[0]) + 1 if self._cache is not None and self._cache[0] < i else -1
        start = pos
        while start != resume and not self._starts_decoding(self._group(order[start])):
            if start == 0:
                raise ProofFormatError(f"checkpoint {i} is a delta with no keyframe before it")
            start -= 1
        state = self._cache[1] if start == resume and self._cache is not None else None
        for p in range(start, pos + 1):
            state = self._decode_one(order[p], state)
        assert state is not None
        return state

    @staticmethod
    def _starts_decoding(group: Any) -> bool:
        """A keyframe, or checkpoint 0 coded against the seeded model: decoding starts here."""
        return bool(group.attrs.get("keyframe", True)) or group.attrs.get(BASE) == SEEDED

    def _decode_one(self, i: int, previous: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        import h5py

        group = self._group(i)
        base = group.attrs.get(BASE)
        if base is not None and (base != SEEDED or i != 0):
            raise ProofFormatError(f"checkpoint {i} names an unknown base {base!r}")
        if base == SEEDED:
            previous = self._seeded_base()
        elif bool(group.attrs.get("keyframe", True)):
            previous = None
        parts = {}
        for name in ("index", "deltas", "plain"):
            ds = group.get(name)
            if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
                raise ProofFormatError(f"checkpoint {i}: /{name} must be a uint8 byte string")
            parts[name] = ds[()].tobytes()
        return _codec.decode_checkpoint(_codec.Encoded(**parts), previous, MAX_ELEMENTS)

    def _seeded_base(self) -> dict[str, np.ndarray]:
        """The model the plan's seed builds on this stack (checkpoint 0 of a compact proof is
        coded against it; its digest check then also checks this stack's initialisation)."""
        if self._seeded is None:
            from pol.tasks import resolve_spec, seeded_weights

            spec = resolve_spec(self.plan.model.get("spec"), self.model_spec, "model")
            weights = seeded_weights(spec, self.plan.model.get("kwargs") or {}, self.plan.seed)
            self._seeded = {MODEL + k: v for k, v in weights.items()}
        return self._seeded

    def stored_bytes(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        h5 = getattr(self, "h5", None)
        if h5 is not None and h5.id.valid:
            h5.close()

    def __enter__(self) -> "ProofReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hex_attr(attrs: Any, name: str) -> bytes:
    try:
        value = bytes.fromhex(str(attrs[name]))
    except (KeyError, ValueError):
        raise ProofFormatError(f"/final attribute {name} is missing or not hex") from None
    if len(value) != 32:
        raise ProofFormatError(f"/final attribute {name} must be 32 bytes")
    return value
