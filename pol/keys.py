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
from pol.smallfiles import KEY_FILE_BYTES, read_small_file

SECRET_HEADER = "pol-ed25519-secret-key-v1"
PUBLIC_HEADER = "pol-ed25519-public-key-v1"
_HEX_FPR = re.compile(r"^[0-9a-fA-F]{40}$")
_KEY_FILE = re.compile(r"(pol-ed25519-(?:secret|public)-key-v1)\r?\n([0-9a-f]{64})(?:\r?\n)?")


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
    """The 32 key bytes of a key file: exactly its header line and 64 lowercase hex digits (an
    optional final newline; CRLF line ends accepted). Anything else is refused, so that two key
    files that load the same key differ at most in line ends."""
    raw = read_small_file(path, KEY_FILE_BYTES, "key file", KeyFileError)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a pol key file (not ASCII text)") from None
    match = _KEY_FILE.fullmatch(text)
    first = text.split("\n", 1)[0].rstrip("\r")
    if match is None or match.group(1) != header:
        other = PUBLIC_HEADER if header == SECRET_HEADER else SECRET_HEADER
        if first == other:
            raise KeyFileError(f"{path} is a {other.split('-')[2]} key file; expected {header}")
        if first == header:
            raise KeyFileError(f"{path}: the key must be 64 lowercase hex digits (32 bytes) on the second line")
        raise KeyFileError(f"{path} is not a pol key file (expected first line {header!r})")
    return bytes.fromhex(match.group(2))


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
    if _HEX_FPR.fullmatch(spec) and not Path(spec).exists():
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
