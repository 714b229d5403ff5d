"""The README's Python example runs as written and its proof verifies (issue 14: examples are tests)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_the_readme_training_loop_example_runs_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks("## Use it around your own training loop")
    assert blocks, "the README lost its Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert "verified" in capsys.readouterr().out
    assert namespace["report"].verdict == "verified" and namespace["report"].exit_code == 0
    assert (tmp_path / "run.pol.h5").is_file() and oct(os.stat(tmp_path / "keys/trainer.key").st_mode)[-3:] == "600"
