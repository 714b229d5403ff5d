"""Crash-consistent proof output: a locked working file, renamed into place when complete.

A proof being written lives in ``<out>.partial`` (e.g. ``run.pol.h5.partial``), never at
``<out>``. Only a finished proof (final signature written) is renamed to ``<out>``, atomically, so
``<out>`` is either absent, an older complete file, or the new complete one. A run that dies
(killed, Ctrl-C, disk full) leaves ``<out>.partial``: a readable proof up to its last flushed
checkpoint, which ``pol train --resume`` continues (:mod:`pol.resume`).

The working file is created with ``O_CREAT`` and locked (``flock``, exclusive, non-blocking)
*before* HDF5 truncates it, so a second writer to the same output fails at once instead of
destroying the proof being written; a leftover partial proof of an interrupted run is never
overwritten without ``overwrite`` (CLI ``--force``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pol.errors import OutputExistsError

PARTIAL_SUFFIX = ".partial"
RESUME_SUFFIX = ".resuming"


def partial_path(out: str | os.PathLike[str]) -> Path:
    """Where the proof for ``out`` is written until it is complete."""
    p = Path(out)
    return p.with_name(p.name + PARTIAL_SUFFIX)


def _lock(path: Path, flags: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputExistsError(f"another process is writing {path} (it holds the lock); wait for it or choose "
                                "another --out") from None
    return fd


class OutputSlot:
    """The locked working file of one proof being written (see the module docstring).

    ``resume=False``: a new proof; the working file is ``<out>.partial``, truncated by the writer.
    ``resume=True``: continuing an interrupted one; ``<out>.partial`` must exist and stays untouched
    while the continuation is written to ``<out>.partial.resuming``, which :meth:`adopt` then moves
    over it (both locked throughout).
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False):
        self.out = Path(out)
        self.partial = partial_path(out)
        self.working = self.partial
        self._fds: list[int] = []
        if self.out.exists() and not overwrite:
            raise OutputExistsError(f"{self.out} exists; pass overwrite=True (CLI: --force) to replace it")
        if resume and not self.partial.is_file():
            raise OutputExistsError(f"no interrupted run to resume: {self.partial} does not exist")
        self._fds.append(_lock(self.partial, 0))
        try:
            if not resume and os.fstat(self._fds[0]).st_size > 0 and not overwrite:
                raise OutputExistsError(f"{self.partial} holds the partial proof of an interrupted run: continue it "
                                        "(pol train --resume) or pass --force to start over")
            if resume:
                self.working = self.partial.with_name(self.partial.name + RESUME_SUFFIX)
                self._fds.append(_lock(self.working, 0))
                os.ftruncate(self._fds[-1], 0)
        except BaseException:
            self.release()
            raise

    @property
    def working_fd(self) -> int:
        """A descriptor of the working file (the locked one)."""
        return self._fds[-1]

    def adopt(self) -> None:
        """Resume: the continuation (written so far) replaces the interrupted partial proof."""
        if self.working != self.partial:
            os.replace(self.working, self.partial)
            self.working = self.partial

    def commit(self) -> None:
        """The proof is complete: move it to ``out`` (atomically) and release the lock."""
        self.adopt()
        os.replace(self.partial, self.out)
        self.release()

    def commit_partial(self) -> None:
        """Resume found a partial proof that is already complete (killed before its rename)."""
        os.replace(self.partial, self.out)
        self.release()

    def release(self) -> None:
        """Let go of the working file(s): a partial proof stays where it is; an unadopted
        continuation (resume) is removed."""
        if self.working != self.partial:
            try:
                os.unlink(self.working)
            except OSError:
                pass
            self.working = self.partial
        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds = []
