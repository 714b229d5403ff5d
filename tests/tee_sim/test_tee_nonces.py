"""The verifier's nonce registry: >= 128 bits, single use, time to live, persistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tee_helpers import FakeClock

from tee_sim import NonceRegistry, NonceStatus
from tee_sim.errors import NonceFormatError
from tee_sim.nonces import parse_nonce_hex


def test_tee_nonce_is_long_random_and_single_use(clock: FakeClock) -> None:
    registry = NonceRegistry(ttl_seconds=60, clock=clock)
    a, b = registry.issue(), registry.issue()
    assert len(a) == 32 and len(b) == 32 and a != b
    assert registry.consume(a) is NonceStatus.FRESH
    assert registry.consume(a) is NonceStatus.REPLAYED
    assert registry.consume(b) is NonceStatus.FRESH


def test_tee_nonce_expires_after_ttl(clock: FakeClock) -> None:
    registry = NonceRegistry(ttl_seconds=60, clock=clock)
    a, b = registry.issue(), registry.issue()
    clock.advance(60)
    assert registry.consume(a) is NonceStatus.FRESH  # exactly at the TTL still counts
    clock.advance(0.5)
    assert registry.consume(b) is NonceStatus.EXPIRED
    assert registry.consume(b) is NonceStatus.REPLAYED


def test_tee_nonce_unknown_and_short_are_refused(clock: FakeClock) -> None:
    registry = NonceRegistry(clock=clock)
    assert registry.consume(b"\x01" * 32) is NonceStatus.UNKNOWN
    assert registry.consume(b"\x01" * 15) is NonceStatus.TOO_SHORT
    with pytest.raises(ValueError):
        registry.issue(8)
    with pytest.raises(ValueError):
        NonceRegistry(ttl_seconds=0)


def test_tee_nonce_old_entries_are_pruned(clock: FakeClock) -> None:
    registry = NonceRegistry(ttl_seconds=10, clock=clock)
    registry.issue()
    clock.advance(100)
    registry.issue()
    assert len(registry) == 1


def test_tee_nonce_registry_persists_across_instances(tmp_path: Path, clock: FakeClock) -> None:
    store = tmp_path / "nonces.json"
    nonce = NonceRegistry(path=store, clock=clock).issue()
    assert NonceRegistry(path=store, clock=clock).consume(nonce) is NonceStatus.FRESH
    assert NonceRegistry(path=store, clock=clock).consume(nonce) is NonceStatus.REPLAYED
    assert json.loads(store.read_text())["nonces"][nonce.hex()]["used_at"] == clock.now


def test_tee_nonce_store_corrupt_is_a_typed_error(tmp_path: Path) -> None:
    store = tmp_path / "nonces.json"
    store.write_text('{"nonces": {"ab": {"expires_at": "soon"}}}')
    with pytest.raises(NonceFormatError):
        NonceRegistry(path=store).issue()
    store.write_text("not json")
    with pytest.raises(NonceFormatError):
        NonceRegistry(path=store).consume(b"\x00" * 32)


def test_tee_parse_nonce_hex() -> None:
    assert parse_nonce_hex("ab" * 16) == b"\xab" * 16
    with pytest.raises(NonceFormatError):
        parse_nonce_hex("ab" * 15)  # 120 bits
    with pytest.raises(NonceFormatError):
        parse_nonce_hex("zz" * 16)
