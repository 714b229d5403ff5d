"""Verification report: every check with its figure, a verdict, and renderers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One check. ``passed`` is None when the check could not run (never counts as passing)."""

    name: str
    passed: bool | None
    figure: str = ""
    detail: str = ""


@dataclass
class Report:
    subject: str
    checks: list[Check] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, passed: bool | None, figure: str = "", detail: str = "") -> Check:
        check = Check(name, passed, figure, detail)
        self.checks.append(check)
        return check

    def extend(self, checks: list[Check]) -> None:
        self.checks.extend(checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def verdict(self) -> str:
        if self.failed:
            return "rejected"
        skipped = [c for c in self.checks if c.passed is None]
        if self.info.get("legacy"):
            return "legacy-replay-consistent" if self.checks else "incomplete"  # never "verified"
        if skipped and all(c.name == "signer" for c in skipped):
            return "self-asserted"  # consistent, but nobody vouches for the signer
        if not self.checks or skipped:
            return "incomplete"
        return "verified"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "verified" else 1

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "subject": self.subject,
            "checks": [asdict(c) for c in self.checks],
            **self.info,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    def render(self, stream: TextIO | None = None) -> None:
        """The human-readable table. Every string is escaped (:func:`pol.terminal.printable`): a
        proof's fields and file names reach the terminal as visible text, never as control codes."""
        from pol.terminal import printable

        out = stream or sys.stderr
        width = max([len(c.name) for c in self.checks] + [5])
        out.write(f"proof-of-learning verification: {printable(self.subject)}\n")
        for key in ("mode", "environment_adjustments", "signer_trust", "segment_selection", "segments_replayed",
                    "targeted_segments", "steps_challenged", "detection_probability", "single_segment", "guarantee",
                    "verify_compute_fraction", "warning"):
            if self.info.get(key) not in (None, [], ""):
                out.write(f"  {key.replace('_', ' ')}: {printable(self.info[key])}\n")
        for line in self.info.get("legacy_limitations", []):
            out.write(f"  LEGACY: {printable(line)}\n")
        for c in self.checks:
            mark = {True: "PASS", False: "FAIL", None: "SKIP"}[c.passed]
            line = f"  {mark}  {printable(c.name):<{width}}  {printable(c.figure)}"
            out.write(line.rstrip() + "\n")
            if c.detail and c.passed is not True:
                out.write(f"        {printable(c.detail)}\n")
        out.write(f"verdict: {self.verdict.upper()}\n")
