"""The quick malformed-input corpus (scripts/fuzz_inputs.py --quick): every bad count must be 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~300 processes: the second phase of `make test` (README, Development)

ROOT = Path(__file__).resolve().parents[2]
BAD = ("crashes", "hangs", "exit0_on_garbage", "unexplained_exit0_bitflips", "internal_errors", "multiline_errors",
       "memory_blowups", "control_chars_in_output", "wrong_exit", "bad_json", "build_errors")


@pytest.fixture(scope="module")
def quick_summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("fuzz")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz_inputs.py"), "--quick", "--json", "--jobs", "2",
                           "--workdir", str(work), "--csv", str(work / "cases.csv")],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    summary["_returncode"] = proc.returncode
    return summary


def test_quick_corpus_has_no_bad_outcome(quick_summary: dict) -> None:
    bad = {k: quick_summary[k] for k in BAD if quick_summary[k]}
    assert not bad, (bad, quick_summary["bad_cases"][:20])
    assert quick_summary["_returncode"] == 0 and quick_summary["verdict"] == "clean"


def test_quick_corpus_covers_every_input_kind(quick_summary: dict) -> None:
    assert quick_summary["cases"] >= 200
    assert set(quick_summary["by_kind"]) >= {"proof", "safetensors", "key", "challenge", "response", "zk", "tee"}
    families = {f.split("/")[1] for f in quick_summary["by_family"]}
    assert families >= {"bitflip", "truncate", "dtype", "shape", "storage", "link", "virtual", "external", "attr",
                        "nesting", "flood", "plan", "forged", "control"}
    # the honest controls verified (else every rejection above would prove nothing)
    assert quick_summary["exit_codes"].get("0", 0) >= 6
