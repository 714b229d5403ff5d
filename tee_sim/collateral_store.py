"""The verifier's own collateral: a store that only ever moves forward.

A DCAP verifier fetches TCB info and revocation lists from the vendor (Intel PCS, or a PCCS
cache it runs), not from the party being attested. :class:`CollateralStore` is that cache.
Collateral offered to it (refreshed from the vendor, or handed over by anyone) is adopted
only if the pinned vendor root signed it and it is newer than what the store holds, ordered
by ``(tcb_evaluation_data_number, issue_date)``: after a revocation or a TCB downgrade, the
older, more favourable collateral is never used again, whoever offers it. With ``path`` the
store is a JSON file shared across processes (locked, atomically replaced)::

    store = CollateralStore("verifier/collateral-store.json", root_public_key=root)
    store.offer(Collateral.from_bytes(fetched))     # StoreUpdate.ADOPTED / UNCHANGED / STALE / UNTRUSTED
    verifier = AttestationVerifier(..., collateral=store, ...)   # judges with store.current
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path

from tee_sim._encoding import require, strict_json_loads
from tee_sim._statefile import atomic_write, locked
from tee_sim.collateral import Collateral
from tee_sim.errors import StateError

_KIND = "pol-tee-sim-collateral-store"


class StoreUpdate(str, enum.Enum):
    """What :meth:`CollateralStore.offer` did with the collateral offered."""

    ADOPTED = "adopted"  #: newer than the store's: now the current collateral
    UNCHANGED = "unchanged"  #: the very collateral the store holds
    STALE = "stale"  #: not newer than the store's: ignored (a downgrade is never adopted)
    UNTRUSTED = "untrusted"  #: not signed by the pinned vendor root: ignored


class CollateralStore:
    """Collateral the verifier trusts, monotonic in ``Collateral.freshness``."""

    def __init__(self, path: str | os.PathLike[str] | None, *, root_public_key: bytes) -> None:
        if len(root_public_key) != 32:
            raise ValueError("root_public_key must be the 32-byte vendor root")
        self._path = Path(path) if path is not None else None
        self._root = bytes(root_public_key)
        self._current: Collateral | None = None

    @property
    def current(self) -> Collateral | None:
        """The newest collateral adopted so far (None before the first adoption)."""
        if self._path is None:
            return self._current
        with locked(self._path):
            return self._read()

    def offer(self, collateral: Collateral) -> StoreUpdate:
        """Adopt ``collateral`` if the pinned root signed it and it is newer than the current one."""
        if not collateral.verify(self._root):
            return StoreUpdate.UNTRUSTED
        if self._path is None:
            outcome = _compare(collateral, self._current)
            if outcome is StoreUpdate.ADOPTED:
                self._current = collateral
            return outcome
        with locked(self._path):
            outcome = _compare(collateral, self._read())
            if outcome is StoreUpdate.ADOPTED:
                doc = {"schema_version": 1, "kind": _KIND, "collateral": json.loads(collateral.to_bytes())}
                atomic_write(self._path, json.dumps(doc, sort_keys=True, indent=1) + "\n")
            return outcome

    def _read(self) -> Collateral | None:
        assert self._path is not None
        if not self._path.exists():
            return None
        what = f"collateral store {self._path}"
        from pol.smallfiles import JSON_FILE_BYTES, read_small_file

        doc = strict_json_loads(read_small_file(self._path, JSON_FILE_BYTES, what, StateError), StateError, what)
        if require(doc, "kind", str, StateError, what) != _KIND:
            raise StateError(f"{what}: kind is not {_KIND!r}")
        body = require(doc, "collateral", dict, StateError, what)
        collateral = Collateral.from_bytes(json.dumps(body))
        if not collateral.verify(self._root):
            raise StateError(f"{what}: its collateral is not signed by the pinned root (edited, or another root)")
        return collateral


def _compare(offered: Collateral, current: Collateral | None) -> StoreUpdate:
    if current is None or offered.freshness > current.freshness:
        return StoreUpdate.ADOPTED
    if offered.to_bytes() == current.to_bytes():
        return StoreUpdate.UNCHANGED
    return StoreUpdate.STALE


__all__ = ["CollateralStore", "StoreUpdate"]
