"""Writing a proof file (the recorder's background writer thread calls it; docs/FORMAT.md).

Crash-consistent: the file is written as ``<out>.partial`` under an exclusive lock and renamed
when signed (:mod:`pol.partial`); space for each checkpoint is reserved before HDF5 writes, so a
full disk or a file-size limit ends in one :class:`~pol.errors.OutputError` and a readable
partial proof.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import OutputError, short_reason
from pol.hashing import OPTIMIZER_STATE, contiguous, optimizer_state_digest
from pol.plan import Plan
from pol.proof_layout import (
    BASE,
    FORMAT_NAME,
    FORMAT_VERSION,
    FULL,
    MODES,
    OPTIMIZER_STATE_DIGEST,
    SEEDED,
    STORE_AS,
    WITHOUT_OPTIMIZER_STATE,
    ckpt_name,
)
from pol.schedule import lr_sum
from pol.state import MODEL

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
