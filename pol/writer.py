"""Background writer: hashes, chains, codes and writes checkpoints off the training thread.

Jobs run in submission order on one thread. The training thread only snapshots tensors (a
copy) and hands them over; at most ``max_pending`` checkpoint snapshots wait in memory. When the
plan records per-step digests, every step's snapshot is hashed here too (``submit_step``) and
the digests are chained into the next checkpoint's link. After every checkpoint the HDF5 file is
flushed, so a process that dies between checkpoints leaves a file that opens and verifies up to
its last flushed checkpoint (it lacks the final signature).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from pol import chain
from pol.hashing import state_digest, weights_digest
from pol.proof_file import ProofWriter
from pol.state import model_weights


def write_estimate(state: dict[str, np.ndarray], indices_block: np.ndarray, chain_rows: int) -> int:
    """An upper bound on the bytes one checkpoint job adds to the file: the tensors uncompressed
    (coding only shrinks them, but for a few bytes of framing), the indices, the digest rows, and
    HDF5's metadata (object headers, chunk indexes: a few KiB per dataset)."""
    data = sum(int(np.asarray(v).nbytes) for v in state.values())
    return data + data // 50 + int(indices_block.nbytes) + 96 * chain_rows + 3072 * (len(state) + 4) + (32 << 10)


class BackgroundChainWriter:
    def __init__(self, writer: ProofWriter, plan_digest: bytes, stored: Callable[[int], str | None],
                 step_digests: bool = False, max_pending: int = 2, max_pending_steps: int = 64):
        """``stored(i)``: how checkpoint ``i`` is stored (see ProofWriter.store_checkpoint), None: not at all."""
        self._writer = writer
        self._plan_digest = plan_digest
        self._stored = stored
        self._step_digests = step_digests
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pol-writer")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._max_pending_steps = max_pending_steps
        self._steps_pending: deque[Future[None]] = deque()
        self._intermediate: list[bytes] = []       # per-step digests since the last checkpoint
        self.head: bytes | None = None
        self.count = 0
        self._last_state: dict[str, np.ndarray] | None = None

    def _throttle(self, queue: deque[Future[None]], limit: int) -> None:
        while queue and queue[0].done():
            queue.popleft().result()  # re-raise a writer failure on the training thread
        while len(queue) >= limit:
            queue.popleft().result()

    def submit_step(self, state: dict[str, np.ndarray]) -> None:
        """The state after a step that is not a checkpoint (only when the plan records per-step digests)."""
        self._throttle(self._steps_pending, self._max_pending_steps)
        self._steps_pending.append(self._pool.submit(self._step_job, state))

    def _step_job(self, state: dict[str, np.ndarray]) -> None:
        self._intermediate.append(state_digest(state))

    def submit_snapshots(self, snapshots: list[tuple[Any, Any]]) -> None:
        """Per-step snapshots from :class:`pol.stepdigest.StepHasher`, hashed here off the training thread.
        Submitted in batches: each hand-over to the writer thread costs the training thread a switch of the
        interpreter lock, which per step would cost a small model more than its step."""
        if not snapshots:
            return
        self._throttle(self._steps_pending, self._max_pending_steps)
        self._steps_pending.append(self._pool.submit(self._snapshot_job, snapshots))

    def _snapshot_job(self, snapshots: list[tuple[Any, Any]]) -> None:
        from pol.stepdigest import digest_of_snapshot

        self._intermediate.extend(digest_of_snapshot(*snap) for snap in snapshots)

    def submit_step_digest(self, digest: bytes) -> None:
        """A precomputed per-step digest (building a proof from digests already in hand)."""
        self._steps_pending.append(self._pool.submit(self._append_digest, digest))

    def _append_digest(self, digest: bytes) -> None:
        self._intermediate.append(digest)  # the list current when the job runs, not when it was submitted

    def submit(self, index: int, step: int, state: dict[str, np.ndarray], indices_block: np.ndarray) -> None:
        self._throttle(self._pending, self._max_pending)
        self._pending.append(self._pool.submit(self._job, index, step, state, indices_block))

    def _job(self, index: int, step: int, state: dict[str, np.ndarray], indices_block: np.ndarray) -> None:
        sd = state_digest(state)
        intermediate, self._intermediate = self._intermediate, []
        self._writer.reserve(write_estimate(state if self._stored(index) is not None else {}, indices_block,
                                            len(intermediate) + 1))
        if not self._step_digests and intermediate:
            raise RuntimeError("per-step digests were submitted for a plan that does not record them")
        if index == 0:
            self.head = chain.genesis(self._plan_digest, sd)
        else:
            assert self.head is not None
            self.head = chain.link(self.head, sd, indices_block, intermediate)
        self._writer.append_indices(indices_block)
        self._writer.append_chain(step, self.head, sd, [*intermediate, sd] if self._step_digests else None)
        store_as = self._stored(index)
        if store_as is not None:
            self._writer.store_checkpoint(index, step, state, store_as)
        self._writer.flush()
        self.count = index + 1
        self._last_state = state

    def resume_at(self, head: bytes, count: int, last_state: dict[str, np.ndarray]) -> None:
        """Continue a chain whose first ``count`` links (ending in ``head``, at ``last_state``) are
        already in the file (:mod:`pol.resume`)."""
        self.drain()
        self.head, self.count, self._last_state, self._intermediate = head, count, last_state, []

    def last_weights_digest(self) -> bytes:
        """Digest of the model weights of the last checkpoint written (after :meth:`drain`)."""
        if self._last_state is None:
            raise RuntimeError("no checkpoint has been written")
        return weights_digest(model_weights(self._last_state))

    def drain(self) -> None:
        for queue in (self._steps_pending, self._pending):
            while queue:
                queue.popleft().result()

    def shutdown(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)
