"""Background writer: hashes, chains, codes and writes checkpoints off the training thread.

Jobs run in submission order on one thread. The training thread only snapshots tensors
(a copy) and hands them over; at most ``max_pending`` snapshots wait in memory. After every
checkpoint the HDF5 file is flushed, so a process that dies between checkpoints leaves a file
that opens and verifies up to its last flushed checkpoint (it lacks the final signature).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np

from pol import chain
from pol.hashing import state_digest, weights_digest
from pol.proof_file import ProofWriter
from pol.state import model_weights


class BackgroundChainWriter:
    def __init__(self, writer: ProofWriter, plan_digest: bytes, stored: Callable[[int], str | None],
                 max_pending: int = 2):
        """``stored(i)``: how checkpoint ``i`` is stored (see ProofWriter.store_checkpoint), None: not at all."""
        self._writer = writer
        self._plan_digest = plan_digest
        self._stored = stored
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pol-writer")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self.head: bytes | None = None
        self.count = 0
        self._last_state: dict[str, np.ndarray] | None = None

    def submit(self, index: int, step: int, state: dict[str, np.ndarray], indices_block: np.ndarray) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # re-raise a writer failure on the training thread
        if len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._job, index, step, state, indices_block))

    def _job(self, index: int, step: int, state: dict[str, np.ndarray], indices_block: np.ndarray) -> None:
        sd = state_digest(state)
        self.head = chain.genesis(self._plan_digest, sd) if index == 0 else chain.link(self.head, sd, indices_block)  # type: ignore[arg-type]
        self._writer.append_indices(indices_block)
        self._writer.append_chain(step, self.head, sd)
        store_as = self._stored(index)
        if store_as is not None:
            self._writer.store_checkpoint(index, step, state, store_as)
        self._writer.flush()
        self.count = index + 1
        self._last_state = state

    def last_weights_digest(self) -> bytes:
        """Digest of the model weights of the last checkpoint written (after :meth:`drain`)."""
        if self._last_state is None:
            raise RuntimeError("no checkpoint has been written")
        return weights_digest(model_weights(self._last_state))

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def shutdown(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)
