"""The README's framework-integration examples, run as written: ``my_models.py`` is written out, each
Python block runs in a fresh directory with a key pair in keys/, and each ``pol verify`` line must
exit 0 (verified)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

README = Path(__file__).resolve().parents[2] / "README.md"


def _section_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Framework integrations"):]
    section = section[:section.index("\n## ", 3)]
    return re.findall(r"```(python|sh)\n(.*?)```", section, flags=re.S)


def test_readme_integration_examples_record_and_verify(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    from accelerate.state import AcceleratorState

    from cli_runner import run_pol
    from pol.keys import generate_keypair

    blocks = _section_blocks()
    assert [kind for kind, _ in blocks] == ["python", "python", "python", "python", "sh"]
    module, *scripts = [code for kind, code in blocks if kind == "python"]
    assert module.startswith("# my_models.py")
    (tmp_path / "my_models.py").write_text(module)
    (tmp_path / "keys").mkdir()
    generate_keypair(tmp_path / "keys" / "trainer")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    for code in scripts:
        AcceleratorState._reset_state(True)  # (other tests in this process built accelerators)
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    commands = [line.split() for line in blocks[-1][1].splitlines() if line.startswith("pol verify")]
    assert len(commands) == 3
    capsys.readouterr()
    for argv in commands:
        code, out, err = run_pol(argv[1:], capsys)
        assert code == 0, (argv, out, err)
    sys.modules.pop("my_models", None)
    assert os.path.exists("bert.pol.h5")
