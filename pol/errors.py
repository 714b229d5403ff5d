"""One error hierarchy for the whole project.

Every error a user can cause derives from :class:`PolError`. Errors that mean "this input
could not be judged" (a malformed proof, a missing data set, a bad key file) derive from
:class:`InputError`; the CLI maps them to exit code 2 with a one-line message. A proof that
was read and judged but failed a check is *not* an exception: it is a report whose verdict
is "rejected" (exit code 1).
"""

from __future__ import annotations


class PolError(Exception):
    """Base of every error raised on purpose by this project."""


class InputError(PolError):
    """The input could not be judged (CLI exit code 2)."""

    exit_code = 2


class ProofFormatError(InputError, ValueError):
    """A proof file is unreadable, truncated, or does not follow docs/FORMAT.md."""


class KeyFileError(InputError, ValueError):
    """A key file or fingerprint is missing, malformed, or of the wrong kind."""


class DataUnavailableError(InputError, LookupError):
    """The verifier does not hold the data, model or task a proof needs."""


class WeightsFileError(InputError, ValueError):
    """A weights file is unreadable, or refused (e.g. a pickle without --allow-pickle)."""


class OutputExistsError(InputError, FileExistsError):
    """An output file already exists and overwriting it was not asked for (CLI: --force)."""


class OutputError(PolError, OSError):
    """An output file could not be written (disk full, a file-size limit, an I/O error)."""


class PlanError(PolError, ValueError):
    """A recording was set up inconsistently (raised before training starts)."""


class BadSignatureError(PolError):
    """An Ed25519 signature does not verify under the given key."""


class Interrupted(BaseException):
    """The user stopped the command (Ctrl-C): CLI exit code 130, one line.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it; its
    message says what was left behind (e.g. a partial proof and how to resume it)."""

    exit_code = 130


def short_reason(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type name:
    for one-line error messages that quote a library's error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


__all__ = [
    "PolError",
    "InputError",
    "ProofFormatError",
    "KeyFileError",
    "DataUnavailableError",
    "WeightsFileError",
    "OutputExistsError",
    "OutputError",
    "PlanError",
    "BadSignatureError",
    "Interrupted",
    "short_reason",
]
