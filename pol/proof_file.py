"""The HDF5 proof file: writer and reader (see docs/FORMAT.md).

No pickles anywhere: every value is a numeric dataset, a uint8 byte string, or a scalar
attribute. The reader treats the file as untrusted: it is parsed only in a sandboxed child
process (:mod:`pol.untrusted_h5`), its layout is checked against :data:`LAYOUT` before anything
else is read (unknown members, attributes, links, dtypes are refused), and every malformation
becomes :class:`~pol.errors.ProofFormatError` (CLI exit 2).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import OutputError, ProofFormatError, short_reason
from pol.hashing import (
    OPTIMIZER_STATE,
    combine_state_digest,
    contiguous,
    main_state_digest,
    optimizer_state_digest,
    state_digest,
)
from pol.plan import Plan
from pol.schedule import lr_sum
from pol.schema import Attr, Bytes, Dataset, Group, hex32
from pol.state import MODEL
from pol.untrusted_h5 import Limits, Node, UntrustedFile

FORMAT_NAME = "proof-of-learning"
FORMAT_VERSION = 3
MAX_ELEMENTS = 1 << 31
MODES = ("full", "compact")
# Extension points: sections with their own signed layout, read by their own modules.
EXTENSIONS = frozenset({"zk"})
# What numpy raises on values the layout allowed but the content does not make sense of.
_MALFORMED = (KeyError, AttributeError, OSError, ValueError, TypeError, RuntimeError, IndexError)

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
        },
        optional=frozenset({"final", "steps", "responses"}),
        open_members=EXTENSIONS,
    )


# Tensors of every checkpoint with a fixed dtype and number of dimensions (pol.state.capture).
RESERVED_TENSORS = {"meta/step": ("int64", 0), "optim/lr": ("float64", 0), "rng/torch_cpu": ("uint8", 1),
                    "rng/torch_cuda": ("uint8", 1)}


def _check_reserved(state: dict[str, np.ndarray], i: int) -> None:
    for name, (dtype, ndim) in RESERVED_TENSORS.items():
        arr = state.get(name)
        if arr is not None and (arr.dtype != np.dtype(dtype) or arr.ndim != ndim):
            raise ProofFormatError(f"checkpoint {i}: {name} must be a {ndim}-D {dtype} tensor, found {arr.ndim}-D {arr.dtype}")


def _bytes_ds(group: Any, name: str, data: bytes) -> None:
    group.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))


def _writing(writer: "ProofWriter", action: Any) -> Any:
    """Run an HDF5 write; a failure (disk full, a file-size limit, an I/O error) becomes one
    :class:`~pol.errors.OutputError` naming the partial proof, and marks the writer failed."""
    if writer._failed or writer._stopped:
        raise OutputError(f"an earlier write to {writer.partial_path} failed; nothing more is written")
    try:
        return action()
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        writer._failed = True
        raise OutputError(f"cannot write the proof {writer.partial_path} ({short_reason(exc)}); the partial proof "
                          "there holds every checkpoint up to the last one written") from None


def _close_without_writing(f: Any) -> None:
    """Close an HDF5 file whose writes failed without letting HDF5 write again: its descriptor is
    pointed at /dev/null (read-only) first, so the flush on close fails instead of writing."""
    try:
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except (OSError, ValueError, TypeError, RuntimeError):
        pass
    try:
        f.close()
    except (OSError, RuntimeError, ValueError):
        pass


def ckpt_name(i: int) -> str:
    return f"{i:06d}"


class ProofWriter:
    """Appends to a proof file; used from the recorder's background writer thread.

    The file is written as ``<path>.partial``, locked, and renamed to ``path`` by :meth:`close`
    once :meth:`finish` has signed it (:mod:`pol.partial`). A write that fails (disk full, a
    file-size limit) raises :class:`~pol.errors.OutputError` and leaves the partial file as it was
    at the last flush. ``slot``: an :class:`~pol.partial.OutputSlot` already opened (resuming).
    """

    def __init__(self, path: str | os.PathLike[str], *, plan: Plan, plan_signature: bytes,
                 public_key: bytes, codec: str = _codec.DEFAULT_CODEC, keyframe_every: int = 50,
                 mode: str = "full", overwrite: bool = False, slot: Any = None):
        if codec not in _codec.CODECS:
            raise ValueError(f"unknown codec {codec!r}; expected one of {_codec.CODECS}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        from pol.partial import OutputSlot

        self.path = Path(path)
        self.codec, self.keyframe_every = codec, max(1, keyframe_every)
        self._slot = slot if slot is not None else OutputSlot(self.path, overwrite=overwrite)
        self._finished = self._failed = self._stopped = self._started = False
        try:
            self._open(plan, plan_signature, public_key, mode)
        except BaseException:
            try:  # nothing of this proof was written: leave no file that is not one
                os.unlink(self._slot.working)
            except OSError:
                pass
            self._slot.release()
            raise

    def reserve(self, nbytes: int) -> None:
        """Allocate ``nbytes`` of disk beyond the file's end before HDF5 writes them
        (``posix_fallocate``). Disk full or a file-size limit then fails here, before HDF5 has
        changed anything, and the partial proof stays exactly as of its last flush (HDF5 gives
        unused reserved space back when it next flushes: it truncates the file to its end)."""
        if self._failed or self._stopped:
            raise OutputError(f"an earlier write to {self.partial_path} failed; nothing more is written")
        fd = self._slot.working_fd
        try:
            os.posix_fallocate(fd, os.fstat(fd).st_size, max(1, nbytes))
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return  # a file system that cannot reserve: HDF5's own writes report the failure
            self._stopped = True
            left = ("the partial proof there holds every checkpoint written so far" if self._started else
                    "nothing was written")
            raise OutputError(f"cannot write the proof {self.partial_path} ({exc.strerror or exc}: {nbytes} more "
                              f"bytes needed); {left}") from None

    @property
    def partial_path(self) -> Path:
        """Where the proof is until it is complete (after a failure: the readable partial proof)."""
        return self._slot.partial

    def _open(self, plan: Plan, plan_signature: bytes, public_key: bytes, mode: str) -> None:
        import h5py

        # locking=False: the slot's own lock, taken before truncation, guards the file.
        self._f = _writing(self, lambda: h5py.File(self._slot.working, "w", locking=False))
        try:
            self.reserve((64 << 10) + 2 * len(plan.to_bytes()))
            _writing(self, lambda: self._header(plan, plan_signature, public_key, mode))
        except BaseException:
            _close_without_writing(self._f)
            raise
        self._schedule = plan.lr_schedule
        self._previous: dict[str, np.ndarray] | None = None
        self._previous_step = 0
        self._stored = 0
        self.flush()
        self._started = True

    def _header(self, plan: Plan, plan_signature: bytes, public_key: bytes, mode: str) -> None:
        f, codec = self._f, self.codec
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
        width = plan.samples_per_step
        f.create_dataset("indices", shape=(0, width), maxshape=(None, width), dtype=np.int64,
                         chunks=(max(1, plan.every), width), compression="gzip", shuffle=True)
        chain = f.create_group("chain")
        chain.create_dataset("digests", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(256, 32))
        chain.create_dataset("state_digests", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(256, 32))
        chain.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
        if plan.step_digests:
            rows = min(max(plan.every, 64), 4096)
            f.create_group("steps").create_dataset("state_digests", shape=(0, 32), maxshape=(None, 32),
                                                   dtype=np.uint8, chunks=(rows, 32))
        f.create_group("checkpoints")

    def _append(self, ds: Any, rows: np.ndarray) -> None:
        def write() -> None:
            n = ds.shape[0]
            ds.resize(n + len(rows), axis=0)
            ds[n:] = rows
        _writing(self, write)

    def append_indices(self, block: np.ndarray) -> None:
        if len(block):
            self._append(self._f["indices"], np.asarray(block, dtype=np.int64))

    def append_chain(self, step: int, digest: bytes, state_digest: bytes, step_rows: list[bytes] | None = None) -> None:
        """One chain link; ``step_rows``: the per-step state digests since the previous checkpoint
        (ending with this checkpoint's), when the plan records them."""
        chain = self._f["chain"]
        self._append(chain["digests"], np.frombuffer(digest, np.uint8)[None])
        self._append(chain["state_digests"], np.frombuffer(state_digest, np.uint8)[None])
        self._append(chain["steps"], np.asarray([step], dtype=np.int64))
        if step_rows is not None and "steps" in self._f:
            self._append(self._f["steps"]["state_digests"], np.frombuffer(b"".join(step_rows), np.uint8).reshape(-1, 32))

    def store_checkpoint(self, index: int, step: int, state: dict[str, np.ndarray], store_as: str = FULL) -> None:
        """Store checkpoint ``index``; ``store_as`` is one of :data:`STORE_AS` (see docs/FORMAT.md)."""
        if store_as not in STORE_AS:
            raise ValueError(f"store_as must be one of {STORE_AS}, not {store_as!r}")
        _writing(self, lambda: self._store(index, step, state, store_as))

    def _store(self, index: int, step: int, state: dict[str, np.ndarray], store_as: str) -> None:
        group = self._f["checkpoints"].create_group(ckpt_name(index))
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
            total_lr = lr_sum(self._schedule, self._previous_step, step) if previous is not None and store_as != SEEDED else 0.0
            encoded = _codec.encode_checkpoint(state, previous, total_lr)
            for name in ("index", "deltas", "plain"):
                group.create_dataset(name, data=np.frombuffer(getattr(encoded, name), np.uint8))
        self._previous, self._previous_step = state, step
        self._stored += 1

    def flush(self) -> None:
        """Write everything to disk, and give back what :meth:`reserve` allocated beyond the end."""
        _writing(self, self._f.flush)
        end = self._f.id.get_filesize()  # HDF5's end of allocated space (everything it wrote lies below)
        fd = self._slot.working_fd
        if os.fstat(fd).st_size > end:
            os.ftruncate(fd, end)

    def finish(self, *, final_signature: bytes, chain_head: bytes, final_weights_digest: bytes,
               num_checkpoints: int, num_steps: int, finished_at: str) -> None:
        def write() -> None:
            _bytes_ds(self._f["signatures"], "final", final_signature)
            final = self._f.create_group("final")
            final.attrs["chain_head"] = chain_head.hex()
            final.attrs["final_weights_digest"] = final_weights_digest.hex()
            final.attrs["num_checkpoints"] = num_checkpoints
            final.attrs["num_steps"] = num_steps
            final.attrs["finished_at"] = finished_at
            self._f.flush()
        _writing(self, write)
        self._finished = True

    def close(self) -> None:
        """Close the file; a finished proof moves to its path, anything else stays partial.

        After a failed write the file is closed without writing anything more (HDF5 would flush
        metadata that points at data the failed write never stored): the partial proof is the
        file as of its last successful flush."""
        f = getattr(self, "_f", None)
        try:
            if f is not None and f.id.valid:
                if self._failed:
                    _close_without_writing(f)
                else:
                    try:
                        f.close()
                    except (OSError, RuntimeError, ValueError) as exc:
                        self._failed = True
                        raise OutputError(f"cannot close the proof {self.partial_path} ({short_reason(exc)})") from None
        finally:
            if self._finished and not self._failed:
                self._slot.commit()
            else:
                self._slot.release()


class ProofReader:
    """Read-only, validating access to a proof file. Use as a context manager.

    The file is parsed in a sandboxed child process (:mod:`pol.untrusted_h5`) and its layout is
    checked against :func:`layout` and the plan before any value is used.
    """

    def __init__(self, path: str | os.PathLike[str], model_spec: str | None = None, limits: Limits | None = None):
        """``model_spec`` names the model code for proofs whose model is not built in; it is
        needed only to read checkpoint 0 of a compact proof (coded against the seeded model)."""
        self.path = Path(path)
        self.model_spec = model_spec
        self._seeded: dict[str, np.ndarray] | None = None
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None
        self._file = UntrustedFile(self.path, limits, what="proof file")
        self.tree = self._file.root
        try:
            self._load_header()
        except ProofFormatError:
            self.close()
            raise
        except _MALFORMED as exc:
            self.close()
            raise ProofFormatError(f"{self.path} is malformed: {short_reason(exc)}") from None

    # -- header -----------------------------------------------------------------------------
    def _load_header(self) -> None:
        root = self.tree
        if root.attrs.get("format") != FORMAT_NAME:
            raise ProofFormatError(f"{self.path} is not a proof-of-learning file (no format marker)")
        version = root.attrs.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ProofFormatError(f"unsupported format version {str(version)[:20]!r}; this build reads "
                                   f"{FORMAT_VERSION} (record again with this version)")
        codec, mode = root.attrs.get("codec"), root.attrs.get("mode")
        layout(str(codec), str(mode)).validate(root, "/")
        self.mode, self.codec = str(mode), str(codec)
        self.plan_bytes = self.read_bytes("plan")
        self.plan = Plan.from_bytes(self.plan_bytes)  # refuses non-canonical bytes: the digest is over them
        self.plan_digest = self.plan.digest()
        self.legacy = self.plan.is_legacy
        self.signer_public_key = self.read_bytes("signer_public_key")
        self.plan_signature = self.read_bytes("signatures/plan")
        self.final_signature = self.read_bytes("signatures/final") if "signatures/final" in root else None
        self.chain_digests = self._rows("chain/digests")
        self.state_digests = self._rows("chain/state_digests")
        self.checkpoint_steps = np.asarray(self._node("chain/steps").read(), dtype=np.int64)
        n = len(self.chain_digests)
        if len(self.state_digests) != n or len(self.checkpoint_steps) != n:
            raise ProofFormatError("chain datasets have different lengths")
        if n > self.plan.num_checkpoints:
            raise ProofFormatError(f"the chain has {n} links; the plan commits to {self.plan.num_checkpoints} checkpoints")
        self.num_checkpoints = n
        ind = self._node("indices")
        if ind.shape[1] != self.plan.samples_per_step:
            raise ProofFormatError(f"indices must have shape (steps, {self.plan.samples_per_step})")
        if ind.shape[0] > self.plan.num_steps:
            raise ProofFormatError(f"{ind.shape[0]} steps of indices; the plan commits to {self.plan.num_steps}")
        self.num_recorded_steps = int(ind.shape[0])
        steps = self.checkpoint_steps
        if n and (steps[0] != 0 or (np.diff(steps) < 0).any() or steps[-1] > self.num_recorded_steps):
            # Cheap and decisive: every loop over a segment's steps is bounded by the recorded steps.
            raise ProofFormatError("/chain/steps must start at 0, never decrease, and stay within the "
                                   f"{self.num_recorded_steps} recorded steps")
        self.step_state_digests = self._step_digests()
        self.stored_checkpoints = sorted(int(k) for k in self._node("checkpoints").members)
        if self.stored_checkpoints and self.stored_checkpoints[-1] >= n:
            raise ProofFormatError(f"checkpoint {self.stored_checkpoints[-1]} is stored but not in the chain")
        self._check_mode(n, "final" in root)
        if "responses" in root and self.mode != "compact":
            raise ProofFormatError("an embedded challenge response belongs only in a compact proof")
        self.final: dict[str, Any] | None = None
        if "final" in root:
            if self.final_signature is None:
                raise ProofFormatError("/final is present without /signatures/final")
            a = self._node("final").attrs
            self.final = {"chain_head": bytes.fromhex(a["chain_head"]),
                          "final_weights_digest": bytes.fromhex(a["final_weights_digest"]),
                          "num_checkpoints": a["num_checkpoints"], "num_steps": a["num_steps"],
                          "finished_at": a["finished_at"]}
        elif self.final_signature is not None:
            raise ProofFormatError("/signatures/final is present without /final")

    def _check_mode(self, n: int, finished: bool) -> None:
        """The unsigned ``mode`` attribute must describe what the file stores: a full proof stores
        every checkpoint of the chain whole; a finished compact one leaves some out or marks how
        it stores them (checkpoint 0 coded against the seeded model, the last without optimizer state)."""
        marked = any({BASE, OPTIMIZER_STATE_DIGEST} & set(self._group(i).attrs) for i in self.stored_checkpoints)
        whole = self.stored_checkpoints == list(range(n)) and not marked
        if self.mode == "full" and not whole:
            raise ProofFormatError("the file says mode 'full' but does not store every checkpoint whole (refused)")
        if self.mode == "compact" and whole and finished and n > 1:
            raise ProofFormatError("the file says mode 'compact' but stores every checkpoint whole (refused)")

    def _step_digests(self) -> list[bytes] | None:
        """Per-step state digests (row t: the state after step t; row 0: the initial state)."""
        present = "steps" in self.tree
        if present != self.plan.step_digests:
            raise ProofFormatError("/steps must be present exactly when the plan records per-step digests")
        if not present:
            return None
        rows = self._rows("steps/state_digests")
        last = int(self.checkpoint_steps[-1]) if self.num_checkpoints else -1
        if len(rows) != last + 1:
            raise ProofFormatError(f"/steps/state_digests has {len(rows)} rows; the chain reaches step {last}")
        for i, t in enumerate(self.checkpoint_steps):
            if not 0 <= t < len(rows) or rows[int(t)] != self.state_digests[i]:
                raise ProofFormatError(f"/steps/state_digests disagrees with the chain at checkpoint {i}")
        return rows

    def _node(self, path: str) -> Node:
        node = self.tree.get(path)
        if node is None:
            raise ProofFormatError(f"missing /{path}")
        return node

    def read_bytes(self, path: str) -> bytes:
        return bytes(np.asarray(self._node(path).read()).tobytes())

    def _rows(self, path: str) -> list[bytes]:
        arr = np.asarray(self._node(path).read())
        return [bytes(row.tobytes()) for row in arr]

    def section(self, name: str) -> Node | None:
        """An extension section (e.g. ``zk``), already sanitised; its own module checks its layout."""
        if name not in EXTENSIONS | {"responses"}:
            raise KeyError(name)
        return self.tree.get(name)

    # -- body -------------------------------------------------------------------------------
    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.num_recorded_steps if stop is None else stop
        if not 0 <= start <= stop <= self.num_recorded_steps:
            raise ProofFormatError(f"steps {start}..{stop} are outside the {self.num_recorded_steps} recorded")
        return np.asarray(self._node("indices").read()[start:stop], dtype=np.int64)

    def has_embedded_response(self) -> bool:
        """True when a non-interactive challenge response is embedded (see verifier.challenge)."""
        return "responses" in self.tree

    def has_checkpoint(self, i: int) -> bool:
        return i in self.stored_checkpoints

    def is_complete(self, i: int) -> bool:
        """Stored with its optimizer state, so a replay can start from it."""
        return self.has_checkpoint(i) and OPTIMIZER_STATE_DIGEST not in self._group(i).attrs

    def checkpoint_attrs(self, i: int) -> dict[str, Any]:
        return dict(self._group(i).attrs)

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
        return combine_state_digest(main_state_digest(state), bytes.fromhex(attrs[OPTIMIZER_STATE_DIGEST]))

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
            state = self._decode_raw(i) if self.codec == "raw" else self._decode_forward(i)
        except ProofFormatError:
            raise
        except _MALFORMED as exc:
            raise ProofFormatError(f"checkpoint {i} is malformed: {short_reason(exc)}") from None
        _check_reserved(state, i)
        self._cache = (i, state)
        return state

    def _group(self, i: int) -> Node:
        return self._node(f"checkpoints/{ckpt_name(i)}")

    def _decode_raw(self, i: int) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for name, node in self._group(i).visit_datasets():
            if node.read().size > MAX_ELEMENTS:
                raise ProofFormatError(f"tensor {name} is too large")
            state[name] = np.array(node.read())
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
    def _starts_decoding(group: Node) -> bool:
        """A keyframe, or checkpoint 0 coded against the seeded model: decoding starts here."""
        return bool(group.attrs["keyframe"]) or group.attrs.get(BASE) == SEEDED

    def _decode_one(self, i: int, previous: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        group = self._group(i)
        base = group.attrs.get(BASE)
        if base is not None and i != 0:
            raise ProofFormatError(f"checkpoint {i} names the base {base!r}, which only checkpoint 0 may use")
        if base == SEEDED:
            previous = self._seeded_base()
        elif bool(group.attrs["keyframe"]):
            previous = None
        parts = {name: np.asarray(group.members[name].read()).tobytes() for name in ("index", "deltas", "plain")}
        return _codec.decode_checkpoint(_codec.Encoded(**parts), previous, MAX_ELEMENTS)

    def use_seeded_base(self, state: dict[str, np.ndarray]) -> None:
        """Decode checkpoint 0 of a compact proof against this initial state (its ``model/`` part),
        e.g. one built in a process that reproduces the recorded environment."""
        self._seeded = {k: v for k, v in state.items() if k.startswith(MODEL)}
        self._cache = None

    def _seeded_base(self) -> dict[str, np.ndarray]:
        """The model the plan's seed builds on this stack (checkpoint 0 of a compact proof is
        coded against it; its digest check then also checks this stack's initialisation)."""
        if self._seeded is None:
            from pol.resources import check_model_size
            from pol.tasks import resolve_spec, seeded_weights

            spec = resolve_spec(self.plan.model.get("spec"), self.model_spec, "model")
            check_model_size(spec, self.plan.model.get("kwargs") or {}, self.byte_budget)
            weights = seeded_weights(spec, self.plan.model.get("kwargs") or {}, self.plan.run_seed)
            self._seeded = {MODEL + k: v for k, v in weights.items()}
        return self._seeded

    def stored_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def byte_budget(self) -> int:
        """The most data this file may expand to (the sandboxed reader's limit): what it can hold."""
        return self._file.limits.byte_budget(self.stored_bytes())

    def close(self) -> None:
        self._cache = None
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()

    def __enter__(self) -> "ProofReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
