"""Verifier nonces: at least 128 bits, single use, with a time to live.

A :class:`NonceRegistry` issues nonces and later *consumes* them: the first consumption of a
nonce it issued, within its TTL, is fresh; any later one is a replay; a nonce it never issued
is unknown. The verifier consumes a nonce only for a quote it has authenticated (see
:mod:`tee_sim.verify`); :meth:`NonceRegistry.peek` reads a nonce's status without using it,
so a third party sending garbage with someone's nonce cannot burn it. Pass ``path`` to keep
the registry in a JSON file so that a replay is caught across processes (the CLI does);
writes are atomic (temp file + rename) under an advisory ``fcntl`` lock where the platform
has one. ``clock`` is injectable for tests.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tee_sim._encoding import from_hex, strict_json_loads
from tee_sim._statefile import atomic_write, locked
from tee_sim.errors import NonceFormatError

MIN_NONCE_BYTES = 16  # 128 bits
DEFAULT_NONCE_BYTES = 32
DEFAULT_TTL_SECONDS = 300.0


class NonceStatus(str, enum.Enum):
    """Outcome of :meth:`NonceRegistry.consume`."""

    FRESH = "fresh"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    TOO_SHORT = "too_short"


def parse_nonce_hex(text: str) -> bytes:
    """Decode a hex nonce from a user, raising NonceFormatError if it is not hex or too short."""
    raw = from_hex(text.strip(), None, NonceFormatError, "nonce")
    if len(raw) < MIN_NONCE_BYTES:
        raise NonceFormatError(f"nonce: expected at least {MIN_NONCE_BYTES} bytes (128 bits), found {len(raw)}")
    return raw


class NonceRegistry:
    """Issues and consumes single-use nonces (the verifier's side of freshness)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be positive, found {ttl_seconds}")
        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock
        self._path = Path(path) if path is not None else None
        # nonce hex -> {"expires_at": float, "used_at": float | None}
        self._entries: dict[str, dict[str, float | None]] = {}

    # -- persistence -------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with locked(self._path):
            self._load()
            yield
            self._save()

    def _load(self) -> None:
        assert self._path is not None
        if not self._path.exists():
            self._entries = {}
            return
        from pol.smallfiles import JSON_FILE_BYTES, read_small_file

        what = f"nonce store {self._path}"
        obj = strict_json_loads(read_small_file(self._path, JSON_FILE_BYTES, what, NonceFormatError), NonceFormatError, what)
        entries = obj.get("nonces") if isinstance(obj, dict) else None
        if not isinstance(entries, dict):
            raise NonceFormatError(f"nonce store {self._path}: missing 'nonces' object")
        for key, entry in entries.items():
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("expires_at"), (int, float))
                and (entry.get("used_at") is None or isinstance(entry.get("used_at"), (int, float)))
            )
            if not ok:
                raise NonceFormatError(f"nonce store {self._path}: malformed entry for {key[:16]}...")
        self._entries = entries

    def _save(self) -> None:
        assert self._path is not None
        atomic_write(self._path, json.dumps({"schema_version": 1, "nonces": self._entries}, sort_keys=True, indent=1))

    def _prune(self, now: float) -> None:
        # Keep entries for one extra TTL after expiry so a late replay still reads as a replay.
        horizon = now - self.ttl_seconds
        stale = [k for k, e in self._entries.items() if float(e["expires_at"] or 0) < horizon]
        for key in stale:
            del self._entries[key]

    # -- public API ----------------------------------------------------------------------
    def issue(self, n_bytes: int = DEFAULT_NONCE_BYTES) -> bytes:
        """A fresh random nonce (default 256 bits, at least 128), valid for ``ttl_seconds``."""
        if n_bytes < MIN_NONCE_BYTES:
            raise ValueError(f"nonces must be at least {MIN_NONCE_BYTES} bytes, asked for {n_bytes}")
        nonce = secrets.token_bytes(n_bytes)
        with self._locked():
            now = self._clock()
            self._prune(now)
            self._entries[nonce.hex()] = {"expires_at": now + self.ttl_seconds, "used_at": None}
        return nonce

    def consume(self, nonce: bytes) -> NonceStatus:
        """Mark ``nonce`` used and say whether it was fresh. Never raises on a bad nonce."""
        return self._status(nonce, use=True)

    def peek(self, nonce: bytes) -> NonceStatus:
        """What :meth:`consume` would answer, without using the nonce."""
        return self._status(nonce, use=False)

    def _status(self, nonce: bytes, *, use: bool) -> NonceStatus:
        if not isinstance(nonce, (bytes, bytearray)) or len(nonce) < MIN_NONCE_BYTES:
            return NonceStatus.TOO_SHORT
        key = bytes(nonce).hex()
        with self._locked():
            now = self._clock()
            entry = self._entries.get(key)
            if entry is None:
                return NonceStatus.UNKNOWN
            if entry["used_at"] is not None:
                return NonceStatus.REPLAYED
            if use:
                entry["used_at"] = now
            if now > float(entry["expires_at"] or 0):
                return NonceStatus.EXPIRED
            return NonceStatus.FRESH

    def __len__(self) -> int:
        with self._locked():
            return len(self._entries)


__all__ = ["NonceRegistry", "NonceStatus", "parse_nonce_hex", "MIN_NONCE_BYTES"]
