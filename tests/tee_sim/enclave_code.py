"""Code that the tests run inside simulated enclaves (standard library only: it is measured and
re-loaded from this file's bytes by the enclave, so it must not depend on test-only state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def segment_v1(data: bytes, config: Mapping[str, Any]) -> bytes:
    """A stand-in training segment."""
    return bytes(b ^ int(config.get("key", 0)) for b in data)


def segment_v2(data: bytes, config: Mapping[str, Any]) -> bytes:
    """A different version of the code (different source => different mr_enclave)."""
    return bytes((b + int(config.get("key", 0))) % 256 for b in data)


def _mask(b: int) -> int:
    return b ^ 0x5A


def segment_with_helper(data: bytes, config: Mapping[str, Any]) -> bytes:
    """Calls a module-level helper: patching the helper on the host must not change what runs."""
    return bytes(_mask(b) for b in data)


def explodes(data: bytes, config: Mapping[str, Any]) -> bytes:
    """Raises if it ever runs (tests that the enclave refused before running it)."""
    raise RuntimeError("the enclave function ran")


def returns_text(data: bytes, config: Mapping[str, Any]) -> bytes:
    return "not bytes"  # type: ignore[return-value]


def make_segment(key: int):  # noqa: ANN201
    """Two calls give closures with the same source text and different behaviour."""

    def segment(data: bytes, config: Mapping[str, Any]) -> bytes:
        return bytes(b ^ key for b in data)

    return segment


def dynamic_import(data: bytes, config: Mapping[str, Any]) -> bytes:
    """Imports a first-party module by a name no import statement shows (not in the measured image)."""
    return __import__("tee_" + "helpers").__name__.encode()
