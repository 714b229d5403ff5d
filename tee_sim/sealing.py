"""Sealing: encrypt data so that only the right enclave on the same platform can read it.

Key derivation (HKDF-SHA256, RFC 5869, written with :mod:`hmac`)::

    identity = mr_enclave                          (policy MRENCLAVE)
             | mr_signer || isv_prod_id (u16 LE)   (policy MRSIGNER)
    key = HKDF-SHA256(ikm  = platform seal secret (32 random bytes per platform),
                      salt = "pol-tee-sim/seal/v1",
                      info = policy (u16 LE) || identity || isv_svn (u16 LE) ||
                             debug (u8) || key_id (32),
                      L    = 32)

As SGX's ``EGETKEY`` does, the *platform* (the simulated CPU) refuses to derive a key for an
``isv_svn`` above the requesting enclave's own: an enclave at svn N can derive the keys of
every svn <= N (so a patched enclave reads data sealed by its predecessors), never the
reverse (so a downgraded, vulnerable enclave cannot read data sealed by the patched one).
The debug bit is part of the derivation, so a debug enclave never unseals production data.
``key_id`` is random per sealed blob (SGX's KEYID), so each blob has its own key.

Blob layout: ``magic "SIMS" (4) | version u16 | policy u16 | isv_svn u16 | key_id (32) |
SecretBox(nonce 24 | MAC 16 | ciphertext)``. The header is authenticated implicitly: it
feeds the key derivation, so editing it makes decryption fail.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret

from tee_sim.errors import SealingError

SEAL_SALT = b"pol-tee-sim/seal/v1"


class SealPolicy(enum.IntEnum):
    """Which identity a sealing key is bound to (SGX ``KEYPOLICY``)."""

    MRENCLAVE = 1  #: this exact code and configuration
    MRSIGNER = 2  #: any enclave by the same signer and product id, at the same or higher svn


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract then expand."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 output is limited to 8160 bytes")
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def derive_seal_key(
    platform_secret: bytes,
    *,
    policy: SealPolicy,
    mr_enclave: bytes,
    mr_signer: bytes,
    isv_prod_id: int,
    isv_svn: int,
    debug: bool,
    key_id: bytes,
) -> bytes:
    """The 32-byte sealing key (see the module docstring). Callers enforce the svn rule."""
    if policy == SealPolicy.MRENCLAVE:
        identity = mr_enclave
    elif policy == SealPolicy.MRSIGNER:
        identity = mr_signer + struct.pack("<H", isv_prod_id)
    else:  # pragma: no cover - IntEnum guards this
        raise SealingError(f"unknown seal policy {policy!r}")
    info = struct.pack("<H", int(policy)) + identity + struct.pack("<HB", isv_svn, int(debug)) + key_id
    return hkdf_sha256(platform_secret, salt=SEAL_SALT, info=info)


@dataclass(frozen=True)
class SealedHeader:
    """The plaintext header of a sealed blob."""

    policy: SealPolicy
    isv_svn: int
    key_id: bytes

    MAGIC = b"SIMS"
    VERSION = 1
    _LAYOUT = struct.Struct("<4sHHH32s")
    SIZE = _LAYOUT.size  # 42

    def to_bytes(self) -> bytes:
        return self._LAYOUT.pack(self.MAGIC, self.VERSION, int(self.policy), self.isv_svn, self.key_id)

    @classmethod
    def from_bytes(cls, blob: bytes) -> SealedHeader:
        min_size = cls.SIZE + nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < min_size:
            raise SealingError(f"sealed blob: expected at least {min_size} bytes")
        magic, version, policy, svn, key_id = cls._LAYOUT.unpack_from(blob)
        if magic != cls.MAGIC:
            raise SealingError(f"sealed blob: bad magic {magic!r}, expected {cls.MAGIC!r}")
        if version != cls.VERSION:
            raise SealingError(f"sealed blob: unsupported version {version}")
        try:
            seal_policy = SealPolicy(policy)
        except ValueError:
            raise SealingError(f"sealed blob: unknown policy {policy}") from None
        return cls(seal_policy, svn, key_id)


#: ``get_key(policy, isv_svn, key_id) -> key``: the platform's EGETKEY for one enclave.
KeySource = Callable[[SealPolicy, int, bytes], bytes]


def seal(data: bytes, *, policy: SealPolicy, isv_svn: int, get_key: KeySource) -> bytes:
    """Seal ``data`` at ``isv_svn`` under ``policy`` with a key from ``get_key``."""
    header = SealedHeader(SealPolicy(policy), isv_svn, secrets.token_bytes(32))
    box = nacl.secret.SecretBox(get_key(header.policy, header.isv_svn, header.key_id))
    return header.to_bytes() + bytes(box.encrypt(bytes(data)))


def unseal(blob: bytes, *, get_key: KeySource) -> bytes:
    """Open a sealed blob; raise :class:`SealingError` if this enclave cannot."""
    header = SealedHeader.from_bytes(blob)
    box = nacl.secret.SecretBox(get_key(header.policy, header.isv_svn, header.key_id))
    try:
        return box.decrypt(bytes(blob[SealedHeader.SIZE :]))
    except nacl.exceptions.CryptoError:
        raise SealingError(
            f"sealed blob cannot be unsealed by this enclave (policy {header.policy.name}): different "
            "code/signer, platform, debug mode, or the blob was altered"
        ) from None


__all__ = ["SealPolicy", "seal", "unseal", "derive_seal_key", "hkdf_sha256", "SealedHeader"]
