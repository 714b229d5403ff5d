"""Run the ``pol`` entry point in-process, as a user would from a shell."""

from __future__ import annotations

import json
from typing import Any

import pytest


def run_pol(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from pol.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0 if code is None else 2), captured.out, captured.err


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run with --json; a judging document (one with checks) is validated against
    docs/schemas/judgement.schema.json, an error document against error.schema.json."""
    from schemas import validate

    code, out, err = run_pol([*args, "--json"], capsys)
    assert out.strip(), f"no JSON on stdout (exit {code}); stderr: {err}"
    doc = json.loads(out)
    if doc.get("verdict") == "error":
        validate(doc, "error")
    elif "checks" in doc:
        validate(doc, "judgement")
    return code, doc


def failed_checks(doc: dict[str, Any]) -> set[str]:
    return {c["name"] for c in doc["checks"] if c["passed"] is False}


def error_document(out: str) -> dict[str, Any]:
    """The error document a command prints on stdout with --json when it cannot judge (exit 2),
    validated against docs/schemas/error.schema.json."""
    from schemas import validate

    doc = json.loads(out)
    validate(doc, "error")
    return doc
