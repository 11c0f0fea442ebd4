"""README.md stays true: its code runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_pyg_example_runs() -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "TinyNet" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    assert out.getvalue().strip() == "torch.Size([2, 10])"


def test_readme_names_the_commands() -> None:
    text = README.read_text()
    assert "make test" in text and "make demo" in text
