"""The per-node proof file, format ``pol-split-node`` version 1 (docs/SPLIT.md, "Node proof format").

One HDF5 file per node. Nothing in it is a pickle; every value is a numeric dataset, a 1-D
uint8 byte string or a scalar attribute. :class:`NodeProofReader` treats the file as
untrusted and turns every deviation into :class:`~pol.errors.ProofFormatError`.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import OutputExistsError, ProofFormatError, short_reason
from pol.hashing import contiguous, state_digest, tagged_hash, weights_digest
from pol.keys import sign
from pol.schedule import lr_at
from pol.split.messages import HEADER_SIZE
from pol.split.node_state import node_weights
from pol.split.plan import PipelinePlan
from pol.split.transcript import TranscriptSegment, transcript_digest

FORMAT_NAME = "pol-split-node"
FORMAT_VERSION = 1
FINAL_SIGNATURE_DOMAIN = b"pol-split-final-sig-v1"
_CHAIN_TAG = b"pol-split-chain-v1"
MAX_ELEMENTS = 1 << 31
KEYFRAME_EVERY = 50
_MALFORMED = (KeyError, AttributeError, OSError, ValueError, TypeError, RuntimeError)


# -- chain ------------------------------------------------------------------------------------

def genesis(plan_digest: bytes, rank: int, state_digest_0: bytes) -> bytes:
    return tagged_hash(_CHAIN_TAG, plan_digest, struct.pack("<Q", rank), state_digest_0)


def link(previous: bytes, state_digest_i: bytes, transcript_digest_i: bytes) -> bytes:
    return tagged_hash(_CHAIN_TAG, previous, state_digest_i, transcript_digest_i)


def final_message(plan_digest: bytes, rank: int, chain_head: bytes, final_weights_digest: bytes,
                  num_checkpoints: int, num_steps: int) -> bytes:
    return (plan_digest + struct.pack("<Q", rank) + chain_head + final_weights_digest
            + struct.pack("<QQ", num_checkpoints, num_steps))


def _name(i: int) -> str:
    return f"{i:06d}"


def _bytes_ds(group: Any, name: str, data: bytes) -> None:
    group.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))


def _encode_group(group: Any, codec: str, state: dict[str, np.ndarray], previous: dict[str, np.ndarray] | None,
                  lr_sum: float) -> None:
    if codec == "raw":
        for name in sorted(state):
            arr = contiguous(state[name])
            group.create_dataset(name, data=arr, **({"compression": "gzip", "shuffle": True} if arr.size > 16 else {}))
        return
    encoded = _codec.encode_checkpoint(state, previous, lr_sum)
    for part in ("index", "deltas", "plain"):
        group.create_dataset(part, data=np.frombuffer(getattr(encoded, part), np.uint8))


def _header_rows(headers: list[bytes]) -> np.ndarray:
    if not headers:
        return np.zeros((0, HEADER_SIZE), np.uint8)
    return np.frombuffer(b"".join(headers), np.uint8).reshape(len(headers), HEADER_SIZE)


# -- writer -----------------------------------------------------------------------------------

class NodeProofWriter:
    """Writes one node's proof; hashing, coding and HDF5 writes run on one background thread.

    Use: ``submit(i, step, state, segment)`` for every checkpoint in order (segment: the
    transcript since checkpoint ``i-1``; ``None`` for checkpoint 0), then :meth:`finish`.
    After every checkpoint the file is flushed: a node that dies leaves a readable file
    without a final signature (which does not verify).
    """

    def __init__(self, path: str | os.PathLike[str], *, plan: PipelinePlan, plan_bytes: bytes,
                 plan_signatures: list[bytes], rank: int, key: Any, overwrite: bool = False,
                 max_pending: int = 2):
        import h5py

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass overwrite=True (CLI: --force) to replace it")
        self.plan, self.rank, self.key = plan, rank, key
        self.plan_digest = plan.digest()
        self._f = h5py.File(self.path, "w")
        f = self._f
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["mode"] = "compact" if plan.compact_anchor_every is not None else "full"
        f.attrs["codec"] = plan.codec
        f.attrs["rank"] = rank
        _bytes_ds(f, "plan", plan_bytes)
        f.create_dataset("plan_signatures", data=np.frombuffer(b"".join(plan_signatures), np.uint8)
                         .reshape(len(plan_signatures), 64))
        _bytes_ds(f, "signer_public_key", bytes(key.verify_key))
        chain = f.create_group("chain")
        for name in ("digests", "state_digests", "transcript_digests"):
            chain.create_dataset(name, shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(256, 32))
        chain.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
        f.create_group("checkpoints")
        f.create_group("transcript")
        f.create_group("signatures")
        f.flush()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pol-split-writer-{rank}")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._previous: tuple[int, dict[str, np.ndarray]] | None = None
        self._stored = 0
        self.head: bytes | None = None
        self.count = 0
        self._last_state: dict[str, np.ndarray] | None = None
        self.transcript_bytes = 0
        self.raw_transcript_bytes = 0

    def submit(self, index: int, step: int, state: dict[str, np.ndarray], segment: TranscriptSegment | None) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        if len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._job, index, step, state, segment))

    def _append(self, ds: Any, row: np.ndarray) -> None:
        n = ds.shape[0]
        ds.resize(n + 1, axis=0)
        ds[n] = row

    def _job(self, index: int, step: int, state: dict[str, np.ndarray], segment: TranscriptSegment | None) -> None:
        sd = state_digest(state)
        if index == 0:
            td = bytes(32)
            self.head = genesis(self.plan_digest, self.rank, sd)
        else:
            assert segment is not None and self.head is not None
            td = segment.digest()
            self.head = link(self.head, sd, td)
            self._store_transcript(index, segment)
        chain = self._f["chain"]
        self._append(chain["digests"], np.frombuffer(self.head, np.uint8))
        self._append(chain["state_digests"], np.frombuffer(sd, np.uint8))
        self._append(chain["transcript_digests"], np.frombuffer(td, np.uint8))
        self._append(chain["steps"], np.asarray(step, np.int64))
        if self.plan.stored_checkpoint(index):
            self._store_checkpoint(index, step, state)
        self._f.flush()
        self.count = index + 1
        self._last_state = state

    def _store_checkpoint(self, index: int, step: int, state: dict[str, np.ndarray]) -> None:
        group = self._f["checkpoints"].create_group(_name(index))
        group.attrs["step"] = step
        keyframe = self._stored % KEYFRAME_EVERY == 0
        group.attrs["keyframe"] = keyframe
        previous = None if keyframe or self._previous is None else self._previous[1]
        lr_sum = 0.0
        if previous is not None and self._previous is not None:
            schedule = self.plan.stages[self.plan.node_stages(self.rank)[0]]["lr_schedule"]
            lr_sum = float(sum(lr_at(schedule, t) for t in range(self._previous[0], step)))
        _encode_group(group, self.plan.codec, state, previous, lr_sum)
        self._previous = (step, state)
        self._stored += 1

    def _store_transcript(self, index: int, segment: TranscriptSegment) -> None:
        group = self._f["transcript"].create_group(_name(index))
        for name, headers in (("received_headers", segment.received_headers), ("sent_headers", segment.sent_headers)):
            rows = _header_rows(headers)
            # the plan digest, stage fields and shape repeat in every header: gzip takes ~40% off
            group.create_dataset(name, data=rows, **({"compression": "gzip", "shuffle": True} if len(rows) else {}))
        tensors = group.create_group("tensors")
        _encode_group(tensors, self.plan.codec, {_name(i): t for i, t in enumerate(segment.received_tensors)},
                      None, 0.0)
        self.raw_transcript_bytes += segment.raw_tensor_bytes()

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def finish(self, num_steps: int, finished_at: str) -> bytes:
        """Wait for every checkpoint, sign the chain head, close the file; returns the head."""
        self.drain()
        if self.head is None or self._last_state is None:
            raise RuntimeError("no checkpoint was written")
        fw = weights_digest(node_weights(self._last_state))
        message = final_message(self.plan_digest, self.rank, self.head, fw, self.count, num_steps)
        _bytes_ds(self._f["signatures"], "final", sign(self.key, FINAL_SIGNATURE_DOMAIN, message))
        final = self._f.create_group("final")
        final.attrs["chain_head"] = self.head.hex()
        final.attrs["final_weights_digest"] = fw.hex()
        final.attrs["num_checkpoints"] = self.count
        final.attrs["num_steps"] = num_steps
        final.attrs["finished_at"] = finished_at
        self._f.flush()
        self.close()
        return self.head

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)
            if self._f.id.valid:
                self._f.close()


# -- reader -----------------------------------------------------------------------------------

class NodeProofReader:
    """Read-only, validating access to one node's proof. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]):
        from pol.untrusted_h5 import UntrustedFile

        self.path = Path(path)
        self._file = UntrustedFile(self.path, what="node proof")  # parsed in the sandboxed reader
        self.h5 = self._file.root
        try:
            self._load_header()
        except ProofFormatError:
            self.close()
            raise
        except _MALFORMED as exc:
            self.close()
            raise ProofFormatError(f"{self.path} is malformed: {short_reason(exc)}") from None
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    def _fail(self, what: str) -> ProofFormatError:
        return ProofFormatError(f"{self.path.name}: {what}")

    @contextlib.contextmanager
    def _malformed(self, what: str) -> Iterator[None]:
        """Whatever h5py or numpy raise on a layout other than this format's: ProofFormatError."""
        try:
            yield
        except ProofFormatError:
            raise
        except _MALFORMED as exc:
            raise self._fail(f"{what} is malformed: {short_reason(exc)}") from None

    def _load_header(self) -> None:
        f = self.h5
        if f.attrs.get("format") != FORMAT_NAME:
            raise self._fail(f"not a {FORMAT_NAME} proof (no format marker)")
        if f.attrs.get("format_version") != FORMAT_VERSION:
            raise self._fail(f"unsupported format version {f.attrs.get('format_version')!r}; "
                             f"this build reads {FORMAT_VERSION}")
        self.plan_bytes = self.read_bytes("plan", limit=1 << 24)
        self.plan = PipelinePlan.from_bytes(self.plan_bytes)
        self.plan_digest = self.plan.digest()
        self.mode = str(f.attrs.get("mode"))
        if self.mode != ("compact" if self.plan.compact_anchor_every is not None else "full"):
            raise self._fail(f"mode {self.mode!r} does not match the plan")
        if str(f.attrs.get("codec")) != self.plan.codec:
            raise self._fail("codec attribute does not match the plan")
        rank = f.attrs.get("rank")
        if not isinstance(rank, (int, np.integer)) or not 0 <= int(rank) < self.plan.num_nodes:
            raise self._fail(f"rank {rank!r} is not a node of the plan")
        self.rank = int(rank)
        sigs = self._node("plan_signatures")
        if sigs.dtype != np.uint8 or sigs.shape != (self.plan.num_nodes, 64):
            raise self._fail(f"/plan_signatures must be uint8 of shape ({self.plan.num_nodes}, 64)")
        self.plan_signatures = [bytes(row.tobytes()) for row in sigs[()]]
        self.signer_public_key = self.read_bytes("signer_public_key", exact=32)
        self.final_signature = self.read_bytes("signatures/final", exact=64) if "signatures/final" in f else None
        self.chain_digests = self._rows("chain/digests")
        self.state_digests = self._rows("chain/state_digests")
        self.transcript_digests = self._rows("chain/transcript_digests")
        steps = self._node("chain/steps")
        if steps.ndim != 1 or steps.dtype.kind not in "iu":
            raise self._fail("/chain/steps must be a 1-D integer array")
        self.checkpoint_steps = [int(s) for s in steps[()]]
        n = len(self.chain_digests)
        if not (len(self.state_digests) == len(self.transcript_digests) == len(self.checkpoint_steps) == n):
            raise self._fail("chain datasets have different lengths")
        self.num_checkpoints = n
        self.stored_checkpoints = self._numbered("checkpoints")
        self.transcript_segments = self._numbered("transcript")
        self.final: dict[str, Any] | None = None
        if "final" in f:
            a = self._node("final", group=True).attrs
            try:
                self.final = {"chain_head": _hex32(a["chain_head"]), "final_weights_digest": _hex32(a["final_weights_digest"]),
                              "num_checkpoints": int(a["num_checkpoints"]), "num_steps": int(a["num_steps"]),
                              "finished_at": str(a.get("finished_at", ""))}
            except (KeyError, ValueError, TypeError):
                raise self._fail("/final attributes are missing or malformed") from None

    def _numbered(self, group: str) -> list[int]:
        names = list(self._node(group, group=True).keys())
        for k in names:
            if not (k.isascii() and k.isdigit() and k == _name(int(k))):
                raise self._fail(f"unexpected entry /{group}/{k[:40]!r} (entries are named NNNNNN)")
        return sorted(int(k) for k in names)

    def _node(self, path: str, *, group: bool = False) -> Any:
        obj = self.h5.get(path)
        if obj is None:
            raise self._fail(f"missing /{path}")
        if obj.is_group != group:
            raise self._fail(f"/{path} must be {'a group' if group else 'a dataset'}")
        return obj

    def read_bytes(self, path: str, *, exact: int | None = None, limit: int = 1 << 20) -> bytes:
        ds = self._node(path)
        if ds.dtype != np.uint8 or ds.ndim != 1:
            raise self._fail(f"/{path} must be a 1-D uint8 byte string")
        if (exact is not None and ds.shape[0] != exact) or ds.shape[0] > limit:
            raise self._fail(f"/{path} has the wrong size ({ds.shape[0]} bytes)")
        return bytes(ds[()].tobytes())

    def _rows(self, path: str) -> list[bytes]:
        ds = self._node(path)
        if ds.dtype != np.uint8 or ds.ndim != 2 or ds.shape[1] != 32:
            raise self._fail(f"/{path} must be uint8 of shape (n, 32)")
        return [bytes(row.tobytes()) for row in ds[()]]

    # -- checkpoints ------------------------------------------------------------------------
    def has_checkpoint(self, i: int) -> bool:
        return i in self.stored_checkpoints

    def checkpoint_state(self, i: int) -> dict[str, np.ndarray]:
        if i not in self.stored_checkpoints:
            raise self._fail(f"checkpoint {i} is not stored in this {self.mode} proof")
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        with self._malformed(f"checkpoint {i}"):
            state = self._decode_forward(i)
        self._cache = (i, state)
        return state

    def _decode_forward(self, i: int) -> dict[str, np.ndarray]:
        order = self.stored_checkpoints
        pos = order.index(i)
        resume = order.index(self._cache[0]) + 1 if self._cache is not None and self._cache[0] < i else -1
        start = pos
        while start != resume and not bool(self._node(f"checkpoints/{_name(order[start])}", group=True)
                                            .attrs.get("keyframe", True)):
            if start == 0:
                raise self._fail(f"checkpoint {i} is a delta with no keyframe before it")
            start -= 1
        state = self._cache[1] if start == resume and self._cache is not None else None
        for p in range(start, pos + 1):
            group = self._node(f"checkpoints/{_name(order[p])}", group=True)
            previous = None if bool(group.attrs.get("keyframe", True)) else state
            state = self._decode_group(group, previous, f"checkpoint {order[p]}")
        assert state is not None
        return state

    def _decode_group(self, group: Any, previous: dict[str, np.ndarray] | None, what: str) -> dict[str, np.ndarray]:
        if self.plan.codec == "raw":
            state: dict[str, np.ndarray] = {}
            for name, obj in group.visit_datasets():
                if obj.dtype.kind not in "fiub" or obj.size > MAX_ELEMENTS:
                    raise self._fail(f"{what}: tensor {name[:40]!r} has an unsupported dtype or size")
                state[name] = np.array(obj.read())
            return state
        parts = {}
        for name in ("index", "deltas", "plain"):
            ds = group.get(name)
            if ds is None or ds.is_group or ds.dtype != np.uint8 or ds.ndim != 1:
                raise self._fail(f"{what}: /{name} must be a uint8 byte string")
            parts[name] = np.asarray(ds.read()).tobytes()
        return _codec.decode_checkpoint(_codec.Encoded(**parts), previous, MAX_ELEMENTS)

    # -- transcript -------------------------------------------------------------------------
    def _header_list(self, group: Any, name: str, what: str) -> list[bytes]:
        ds = group.get(name)
        if ds is None or ds.is_group or ds.dtype != np.uint8 or ds.ndim != 2 or ds.shape[1] != HEADER_SIZE:
            raise self._fail(f"{what}: /{name} must be uint8 of shape (n, {HEADER_SIZE})")
        plan = self.plan
        most = plan.every * plan.micro_batches * 2 * plan.num_stages  # more than any node sends or receives
        if ds.shape[0] > most:
            raise self._fail(f"{what}: /{name} holds {ds.shape[0]} headers, more than a segment can ({most})")
        return [bytes(row.tobytes()) for row in np.asarray(ds.read())]

    def transcript_headers(self, i: int) -> TranscriptSegment:
        """Segment ``i``'s headers (received and sent), without the received tensors."""
        if i not in self.transcript_segments:
            raise self._fail(f"transcript segment {i} is missing")
        what = f"transcript segment {i}"
        with self._malformed(what):
            group = self._node(f"transcript/{_name(i)}", group=True)
            return TranscriptSegment(self._header_list(group, "received_headers", what), [],
                                     self._header_list(group, "sent_headers", what))

    def transcript(self, i: int) -> TranscriptSegment:
        """Segment ``i`` with its received tensors decoded (in arrival order)."""
        segment = self.transcript_headers(i)
        what = f"transcript segment {i}"
        with self._malformed(what):
            tensors = self._decode_group(self._node(f"transcript/{_name(i)}/tensors", group=True), None, what)
        if sorted(tensors) != [_name(j) for j in range(len(segment.received_headers))]:
            raise self._fail(f"{what}: {len(tensors)} tensors for {len(segment.received_headers)} received headers")
        segment.received_tensors = [tensors[_name(j)] for j in range(len(tensors))]
        return segment

    def recomputed_transcript_digest(self, i: int) -> bytes:
        seg = self.transcript_headers(i)
        return transcript_digest(seg.received_headers, seg.sent_headers)

    def stored_bytes(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        self._cache = None
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()

    def __enter__(self) -> "NodeProofReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hex32(value: Any) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != 32:
        raise ValueError("expected 32 bytes")
    return raw


def node_proof_path(run_dir: str | os.PathLike[str], rank: int) -> Path:
    return Path(run_dir) / f"node{rank}.pol.h5"


def run_final_weights(run_dir: str | os.PathLike[str]) -> tuple[PipelinePlan, dict[str, np.ndarray]]:
    """The plan and every node's final weights (``stage<s>.<key>``), from the node proofs in ``run_dir``."""
    weights: dict[str, np.ndarray] = {}
    plan = None
    paths = sorted(Path(run_dir).glob("node*.pol.h5"))
    for path in paths:
        with NodeProofReader(path) as r:
            plan = r.plan
            last = r.checkpoint_state(r.num_checkpoints - 1)
            weights.update({k: v.copy() for k, v in node_weights(last).items()})
    if plan is None:
        raise ProofFormatError(f"{run_dir} holds no node proofs")
    return plan, weights
