"""The coordinator's log: a hash-chained, signed record of every round (docs/WORKERS.md, "Log").

HDF5 layout (every value a uint8 byte string)::

    attrs: format = "pol-workers-log-v1"
    /plan, /plan_signature                       canonical JSON plan; coordinator's signature
    /rounds/<r:06d>/record, /signature           canonical JSON round record; signature
    /rounds/<r:06d>/submissions/<worker:04d>     the round proof bytes as received (evidence)
    /final/record, /final/signature, /final/weights (safetensors)

Chain: ``link_0 = plan digest``; round record r holds ``prev = link_r`` and
``link_{r+1} = tagged_hash("pol-workers-chain-v1", link_r, record bytes)``. The final record holds
the head, the number of rounds and the final weights digest, so truncation and reordering show.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol.errors import OutputExistsError, short_reason
from pol.hashing import canonical_json, tagged_hash
from pol.keys import sign
from pol.workers.messages import WorkersFormatError, _load_tensors
from pol.workers.plan import FederatedPlan

LOG_FORMAT = "pol-workers-log-v1"
ROUND_RECORD_FORMAT, FINAL_RECORD_FORMAT = "pol-workers-round-v1", "pol-workers-final-v1"
ROUND_DOMAIN, FINAL_DOMAIN = b"pol-workers-round-v1", b"pol-workers-final-v1"
CHAIN_TAG = b"pol-workers-chain-v1"
MAX_BLOB_BYTES = 256 << 20
_MALFORMED = (KeyError, AttributeError, OSError, ValueError, TypeError, RuntimeError)


def submission_digest(raw: bytes) -> str:
    return hashlib.sha256(b"pol-workers-submission-v1" + bytes(raw)).hexdigest()


def chain_link(prev: bytes, record_bytes: bytes) -> bytes:
    return tagged_hash(CHAIN_TAG, prev, record_bytes)


def _put(group: Any, name: str, data: bytes) -> None:
    group.create_dataset(name, data=np.frombuffer(bytes(data), dtype=np.uint8))


class LogWriter:
    """Writes the log round by round (flushed after each), signing as it goes."""

    def __init__(self, path: str | os.PathLike[str], plan: FederatedPlan, plan_signature: bytes, key: SigningKey,
                 *, overwrite: bool = False):
        import h5py

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass --force to replace it")
        self.key, self.head, self.rounds = key, plan.digest(), 0
        self._f = h5py.File(self.path, "w")
        self._f.attrs["format"] = LOG_FORMAT
        _put(self._f, "plan", plan.to_bytes())
        _put(self._f, "plan_signature", plan_signature)
        self._f.create_group("rounds")
        self._f.flush()

    def write_round(self, record: dict[str, Any], submissions: dict[int, bytes]) -> bytes:
        record = {**record, "format": ROUND_RECORD_FORMAT, "round": self.rounds, "prev": self.head.hex()}
        raw = canonical_json(record)
        group = self._f["rounds"].create_group(f"{self.rounds:06d}")
        _put(group, "record", raw)
        _put(group, "signature", sign(self.key, ROUND_DOMAIN, raw))
        subs = group.create_group("submissions")
        for worker, blob in sorted(submissions.items()):
            _put(subs, f"{worker:04d}", blob)
        self._f.flush()
        self.head, self.rounds = chain_link(self.head, raw), self.rounds + 1
        return self.head

    def finish(self, final_weights_digest: bytes, final_weights_blob: bytes) -> None:
        raw = canonical_json({"format": FINAL_RECORD_FORMAT, "rounds": self.rounds, "head": self.head.hex(),
                              "final_weights_digest": final_weights_digest.hex()})
        group = self._f.create_group("final")
        _put(group, "record", raw)
        _put(group, "signature", sign(self.key, FINAL_DOMAIN, raw))
        _put(group, "weights", final_weights_blob)
        self.close()

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


@dataclass
class LoggedRound:
    record_bytes: bytes
    signature: bytes
    submissions: dict[int, bytes]


@dataclass
class CoordinatorLog:
    plan_bytes: bytes
    plan_signature: bytes
    rounds: list[LoggedRound]
    final_record: bytes | None
    final_signature: bytes | None
    final_weights: dict[str, np.ndarray] | None


def is_workers_log(path: str | os.PathLike[str] | Any) -> bool:
    """True when ``path`` (or an already sanitised file) says it is a coordinator log."""
    from pol.errors import ProofFormatError
    from pol.untrusted_h5 import UntrustedFile

    if isinstance(path, UntrustedFile):
        return path.root.attrs.get("format") == LOG_FORMAT
    try:
        with UntrustedFile(path, what="log file") as f:
            return f.root.attrs.get("format") == LOG_FORMAT
    except ProofFormatError:
        return False


def read_log(path: str | os.PathLike[str] | Any) -> CoordinatorLog:
    """Read a log (untrusted, parsed in the sandboxed reader of :mod:`pol.untrusted_h5`): layout
    defects raise :class:`WorkersFormatError`. ``path`` may be an already sanitised file."""
    from pol.errors import ProofFormatError
    from pol.untrusted_h5 import UntrustedFile

    if isinstance(path, UntrustedFile):
        return _read_tree(path.root, path.path)
    try:
        with UntrustedFile(path, what="log file") as f:
            return _read_tree(f.root, path)
    except ProofFormatError as exc:
        raise WorkersFormatError(str(exc)) from None


def _read_tree(f: Any, path: Any) -> CoordinatorLog:
    try:
        fmt = f.attrs.get("format")
        if fmt != LOG_FORMAT:
            raise WorkersFormatError(f"{path} is not a {LOG_FORMAT} file (format {fmt!r:.40})")
        rounds = []
        names = sorted(f["rounds"].keys())
        if names != [f"{i:06d}" for i in range(len(names))]:
            raise WorkersFormatError("log rounds are not numbered 000000, 000001, ... without gaps")
        for name in names:
            g = f["rounds"][name]
            subs = {}
            for key in g["submissions"].keys():
                if not (len(key) == 4 and key.isdigit()):
                    raise WorkersFormatError(f"round {name}: submission name {key!r} is not a worker id")
                subs[int(key)] = _blob(g["submissions"][key])
            rounds.append(LoggedRound(_blob(g["record"]), _blob(g["signature"]), subs))
        final = f.get("final")
        weights = _load_tensors(_blob(final["weights"])) if final is not None else None
        return CoordinatorLog(_blob(f["plan"]), _blob(f["plan_signature"]), rounds,
                              _blob(final["record"]) if final is not None else None,
                              _blob(final["signature"]) if final is not None else None, weights)
    except WorkersFormatError:
        raise
    except _MALFORMED as exc:
        raise WorkersFormatError(f"{path}: malformed log ({type(exc).__name__}: {short_reason(exc)})") from None


def _blob(ds: Any) -> bytes:
    if ds.is_group or ds.dtype != np.uint8 or ds.ndim != 1 or ds.shape[0] > MAX_BLOB_BYTES:
        raise WorkersFormatError(f"log entry /{getattr(ds, 'path', '?')} is not a byte string")
    return np.asarray(ds[()]).tobytes()
