"""Run a real federated job for the tests (coordinator + worker processes on gloo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKERS = 4


def run_job(d: Path, keys: Path, runs: list[dict[str, Any]], workers: int = WORKERS, timeout_s: float = 300,
            grace_s: float = 10.0, **node: Any) -> dict[str, Any]:
    from pol.workers.config import NodeConfig, RunSpec
    from pol.workers.launch import launch_local

    config = NodeConfig([RunSpec(**r) for r in runs], str(keys / "coordinator.key"), str(keys / "worker{rank}.key"),
                        summary=str(d / "summary.json"), overwrite=True, **node)
    config.save(d / "job.json")
    launched = launch_local(d / "job.json", workers, timeout_s=timeout_s, grace_s=grace_s)
    summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else None
    return {"launch": launched, "summary": summary, "runs": runs, "dir": d}


def statuses(summary_run: dict[str, Any]) -> dict[tuple[int, int], str]:
    """(round, worker) -> status of one run's summary."""
    return {(s["round"], s["worker"]): s["status"] for s in summary_run["submissions"]}
