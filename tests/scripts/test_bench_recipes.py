"""scripts/bench_recipes.py: rows of the recipe matrix, run small (the full matrix is the benchmark's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench_recipes import main  # noqa: E402


def test_accepted_rows_verify_and_refused_rows_are_refused_before_the_first_update(capsys: Any) -> None:
    code = main(["--json", "--steps", "4", "--every", "2", "--pairs", "1",
                 "--only", "bf16-clip-accumulation,refused:fp16-autocast,refused:clip-in-loop-not-committed"])
    doc = json.loads(capsys.readouterr().out)
    rows = {r["recipe"]: r for r in doc["rows"]}
    assert code == 0 and doc["false_rejections"] == 0 and doc["refused"] == 2
    row = rows["bf16-clip-accumulation"]
    assert row["verified"] and row["bitwise"] and row["segments_replayed"] == 2
    assert row["overhead"] > 0 and row["self_check_s"] > 0  # the self-check ran (k=2 steps, once)
    for name in ("refused:fp16-autocast", "refused:clip-in-loop-not-committed"):
        assert rows[name]["refused"] and rows[name]["steps_done"] == 0 and not rows[name]["signed"]
    assert "GradScaler" in rows["refused:fp16-autocast"]["error"]


def test_a_recipe_that_is_not_refused_fails_the_benchmark(capsys: Any, monkeypatch: Any) -> None:
    """The exit status is 1 when a row meant to be refused records (here: clipping committed after all)."""
    import scripts.bench_recipes as bench

    original = bench._refused_loop

    def committed_clip(**overrides: Any) -> Any:
        if overrides.get("clip_in_loop"):
            overrides = {**overrides, "clip_in_loop": False}
        return original(**overrides)

    monkeypatch.setattr(bench, "_refused_loop", committed_clip)
    code = main(["--json", "--steps", "4", "--every", "2", "--pairs", "1", "--only", "refused:clip-in-loop-not-committed"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["refused"] == 0 and doc["rows"][0]["refused"] is False
