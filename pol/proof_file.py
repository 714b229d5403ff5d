"""Reading a proof file (see docs/FORMAT.md); :class:`ProofWriter` and the layout names are
re-exported here for the callers that import them from this module.

No pickles anywhere: every value is a numeric dataset, a uint8 byte string, or a scalar
attribute. The reader treats the file as untrusted: it is parsed only in a sandboxed child
process (:mod:`pol.untrusted_h5`), its layout is checked against :func:`pol.proof_layout.layout`
before anything else is read (unknown members, attributes, links, dtypes are refused), and every
malformation becomes :class:`~pol.errors.ProofFormatError` (CLI exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import ProofFormatError, short_reason
from pol.hashing import OPTIMIZER_STATE, combine_state_digest, main_state_digest, state_digest
from pol.plan import Plan
from pol.proof_layout import (  # noqa: F401 (re-exported)
    BASE,
    CHECKPOINT_NAME,
    EXTENSIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    FULL,
    MAX_ELEMENTS,
    MODES,
    OPTIMIZER_STATE_DIGEST,
    RESERVED_TENSORS,
    SEEDED,
    STORE_AS,
    WITHOUT_OPTIMIZER_STATE,
    _check_reserved,
    ckpt_name,
    layout,
)
from pol.proof_writer import ProofWriter  # noqa: F401 (re-exported)
from pol.state import MODEL
from pol.untrusted_h5 import Limits, Node, UntrustedFile

__all__ = ["ProofReader", "ProofWriter", "layout", "ckpt_name", "FORMAT_NAME", "FORMAT_VERSION", "MODES", "FULL",
           "SEEDED", "WITHOUT_OPTIMIZER_STATE", "STORE_AS", "BASE", "OPTIMIZER_STATE_DIGEST", "CHECKPOINT_NAME",
           "EXTENSIONS", "MAX_ELEMENTS", "RESERVED_TENSORS"]

# What numpy raises on values the layout allowed but the content does not make sense of.
_MALFORMED = (KeyError, AttributeError, OSError, ValueError, TypeError, RuntimeError, IndexError)


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
        """The unsigned ``mode`` attribute must describe how the file stores checkpoints: a full proof
        stores them whole (a checkpoint it *lacks* fails the verifier's ``checkpoints`` check, exit 1);
        a finished compact one leaves some out or marks how it stores them (checkpoint 0 coded against
        the seeded model, the last without optimizer state)."""
        marked = any({BASE, OPTIMIZER_STATE_DIGEST} & set(self._group(i).attrs) for i in self.stored_checkpoints)
        whole = self.stored_checkpoints == list(range(n)) and not marked
        if self.mode == "full" and marked:
            raise ProofFormatError("the file says mode 'full' but stores checkpoints the compact way (refused)")
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
