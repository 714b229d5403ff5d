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
    code, out, err = run_pol([*args, "--json"], capsys)
    assert out.strip(), f"no JSON on stdout (exit {code}); stderr: {err}"
    return code, json.loads(out)


def failed_checks(doc: dict[str, Any]) -> set[str]:
    return {c["name"] for c in doc["checks"] if c["passed"] is False}
