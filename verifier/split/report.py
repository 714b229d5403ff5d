"""The pipeline report: one :class:`~verifier.report.Report` per node, pipeline checks, blame."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from verifier.report import SCHEMA_VERSION, Check, Report


@dataclass
class PipelineReport:
    subject: str
    nodes: list[Report] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)     # pipeline-level (same plan, ...)
    blamed_by_pipeline: dict[int, list[str]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def blamed(self) -> list[int]:
        """Nodes that signed a false statement: a failed check of their own, or a pipeline check."""
        ranks = {int(r.info["rank"]) for r in self.nodes if r.failed} | set(self.blamed_by_pipeline)
        return sorted(ranks)

    @property
    def verdict(self) -> str:
        if self.blamed or any(c.passed is False for c in self.checks):
            return "rejected"
        verdicts = {r.verdict for r in self.nodes}
        if not self.nodes or any(c.passed is None for c in self.checks):
            return "incomplete"
        if verdicts == {"verified"}:
            return "verified"
        return "self-asserted" if "self-asserted" in verdicts else "incomplete"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "verified" else 1

    def all_checks(self) -> list[Check]:
        """Pipeline checks, then every node's checks named ``node<r>.<check>``."""
        out = list(self.checks)
        for r in self.nodes:
            out.extend(Check(f"node{r.info['rank']}.{c.name}", c.passed, c.figure, c.detail) for c in r.checks)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "subject": self.subject,
            "blamed": self.blamed,
            "checks": [c.__dict__ for c in self.all_checks()],
            "nodes": [{"rank": r.info["rank"], "verdict": r.verdict, "blamed": bool(r.failed)
                       or int(r.info["rank"]) in self.blamed_by_pipeline,
                       "failed_checks": [c.name for c in r.failed] + self.blamed_by_pipeline.get(int(r.info["rank"]), []),
                       **{k: v for k, v in r.info.items() if k != "rank"},
                       "checks": [c.__dict__ for c in r.checks]} for r in self.nodes],
            **self.info,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def render(self, stream: TextIO | None = None) -> None:
        out = stream or sys.stderr
        out.write(f"split-learning pipeline verification: {self.subject}\n")
        for key in ("plan_digest", "nodes_total", "verify_fraction"):
            if key in self.info:
                out.write(f"  {key.replace('_', ' ')}: {self.info[key]}\n")
        for c in self.checks:
            _line(out, c, 0)
        for r in self.nodes:
            rank = int(r.info["rank"])
            role = r.info.get("role", "")
            blame = "  <- BLAMED" if rank in self.blamed else ""
            out.write(f"node {rank} ({role}, stages {r.info.get('stages')}): {r.verdict.upper()}{blame}\n")
            out.write(f"    segments replayed: {r.info.get('segments_replayed')}/{r.info.get('segments_total')} "
                      f"{r.info.get('replayed_segments', [])}; detection probability: "
                      f"{r.info.get('detection_probability')}\n")
            for c in r.checks:
                _line(out, c, 2)
        if self.blamed:
            out.write(f"blamed: {', '.join(f'node {b}' for b in self.blamed)}\n")
        out.write(f"verdict: {self.verdict.upper()}\n")


def _line(out: TextIO, c: Check, indent: int) -> None:
    mark = {True: "PASS", False: "FAIL", None: "SKIP"}[c.passed]
    pad = " " * indent
    out.write(f"{pad}  {mark}  {c.name:<20}  {c.figure}".rstrip() + "\n")
    if c.detail and c.passed is not True:
        out.write(f"{pad}        {c.detail}\n")


def node_report(subject: str, rank: int) -> Report:
    report = Report(subject=subject)
    report.info["rank"] = rank
    return report
