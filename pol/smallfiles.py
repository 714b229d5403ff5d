"""Reading small untrusted files (keys, challenges, JSON documents, quotes) with a size limit.

``path.read_bytes()`` on a file someone else named can hang (a FIFO waits for a writer) or fill
memory (``/dev/zero`` never ends). :func:`read_small_file` reads only regular files, opens them
without blocking, and stops one byte past the limit, so the work is bounded by the limit whatever
the path names. Limits are per kind of file (docs/FORMAT.md, Limits).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pol.errors import InputError, short_reason

KEY_FILE_BYTES = 4096          # pol key files (two short lines)
JSON_FILE_BYTES = 4 << 20      # challenges, TEE policies, collateral, state files
DATA_FILE_BYTES = 256 << 20    # simulated-TEE quotes, enclave inputs and outputs


def check_regular_file(path: str | os.PathLike[str], what: str, error: type[Exception] = InputError) -> Path:
    """``path`` if it names a regular file (after symbolic links); raises ``error`` otherwise."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except (OSError, RuntimeError) as exc:  # a symbolic link loop, a permission problem
        raise error(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {p} is not a regular file")
    return p


def read_small_file(path: str | os.PathLike[str], limit: int, what: str, error: type[Exception] = InputError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``error`` (one line) otherwise."""
    p = check_regular_file(path, what, error)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped for something else since the check
            raise error(f"{what} {p} is not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} {p} is larger than {limit} bytes")
    return data


def parse_json(raw: bytes | str, what: str, error: type[Exception] = InputError) -> object:
    """Strict JSON: UTF-8, no NaN or Infinity, no duplicate keys, nesting only as deep as the
    parser's recursion limit allows; ``error`` (one line) otherwise."""
    def no_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate keys")
        return out

    import sys

    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    previous = sys.getrecursionlimit()
    # The C parser recurses per nesting level: under a raised recursion limit (pytest-xdist, an
    # embedding application) a deep document would overflow the C stack, so cap it here.
    sys.setrecursionlimit(min(previous, depth + 500))
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} is not valid JSON ({short_reason(exc)[:120]})") from None
    finally:
        sys.setrecursionlimit(previous)
