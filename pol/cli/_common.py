"""Shared CLI helpers: progress bars on stderr (TTY only), JSON output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click


def progress_enabled(json_output: bool) -> bool:
    return not json_output and sys.stderr.isatty()


@contextlib.contextmanager
def progress(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; draws a bar on stderr only when ``enabled``."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


class ProgressFactory:
    """Adapts :func:`progress` to the ``progress(label, total) -> advance`` callback style."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._stack = contextlib.ExitStack()

    def __call__(self, label: str, total: int) -> Callable[[int], None]:
        return self._stack.enter_context(progress(label, total, self.enabled))

    def __enter__(self) -> "ProgressFactory":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def emit_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def json_option(text: str | None, flag: str) -> dict[str, Any] | None:
    """A JSON-object option (``--data-kwargs '{"root": "data/"}'``); bad JSON is an input error."""
    if text is None:
        return None
    from pol.errors import InputError

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{flag} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag} must be a JSON object")
    return value
