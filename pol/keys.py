"""Ed25519 key files (PyNaCl), fingerprints, signing and verification.

Key files are small text files: a header line naming the kind, then the hex key. The secret
key file is written with mode 0600. A *fingerprint* is the first 20 bytes (40 hex digits) of
SHA-256("pol-key-fingerprint-v1" || public key).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError as _NaclBadSignature
from nacl.signing import SigningKey, VerifyKey

from pol.errors import BadSignatureError, KeyFileError

SECRET_HEADER = "pol-ed25519-secret-key-v1"
PUBLIC_HEADER = "pol-ed25519-public-key-v1"
_HEX_FPR = re.compile(r"^[0-9a-fA-F]{40}$")


def fingerprint(public_key: bytes | VerifyKey) -> str:
    raw = bytes(public_key)
    return hashlib.sha256(b"pol-key-fingerprint-v1" + raw).hexdigest()[:40]


def generate_keypair(out_prefix: str | os.PathLike[str], *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<prefix>.key`` (0600) and ``<prefix>.pub``; return their paths."""
    prefix = Path(out_prefix)
    secret_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for p in (secret_path, public_path):
        if p.exists() and not overwrite:
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key (remove it first)")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sk = SigningKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(secret_path, flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{SECRET_HEADER}\n{bytes(sk).hex()}\n")
    os.chmod(secret_path, 0o600)
    public_path.write_text(f"{PUBLIC_HEADER}\n{bytes(sk.verify_key).hex()}\n")
    return secret_path, public_path


def _read_key_file(path: Path, header: str) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"key file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != 2 or lines[0] != header:
        other = PUBLIC_HEADER if header == SECRET_HEADER else SECRET_HEADER
        if lines and lines[0] == other:
            raise KeyFileError(f"{path} is a {other.split('-')[2]} key file; expected {header}")
        raise KeyFileError(f"{path} is not a pol key file (expected first line {header!r})")
    try:
        raw = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"{path}: key is not hex") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: expected a 32-byte key, found {len(raw)} bytes")
    return raw


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    p = Path(path)
    raw = _read_key_file(p, SECRET_HEADER)
    mode = p.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{p} is readable by others (mode {mode:o}); run: chmod 600 {p}")
    return SigningKey(raw)


def load_verify_key(path: str | os.PathLike[str]) -> VerifyKey:
    return VerifyKey(_read_key_file(Path(path), PUBLIC_HEADER))


@dataclass(frozen=True)
class TrustedKey:
    """What the verifier trusts: a full public key, or only a fingerprint to match."""

    verify_key: VerifyKey | None
    fingerprint: str
    source: str

    def matches(self, public_key: bytes) -> bool:
        if self.verify_key is not None:
            return bytes(self.verify_key) == bytes(public_key)
        return fingerprint(public_key) == self.fingerprint


def resolve_trusted_key(spec: str) -> TrustedKey:
    """``--key`` accepts a public key file or a 40-hex-digit fingerprint."""
    if _HEX_FPR.match(spec) and not Path(spec).exists():
        return TrustedKey(None, spec.lower(), f"fingerprint {spec.lower()}")
    vk = load_verify_key(spec)
    return TrustedKey(vk, fingerprint(vk), f"key file {spec}")


def sign(key: SigningKey, domain: bytes, message: bytes) -> bytes:
    return key.sign(domain + message).signature


def verify_signature(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`BadSignatureError` unless ``signature`` is valid."""
    try:
        VerifyKey(public_key).verify(domain + message, signature)
    except (_NaclBadSignature, ValueError, TypeError) as exc:
        raise BadSignatureError(f"signature does not verify: {exc}") from None
