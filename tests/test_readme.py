"""README.md stays true: its code runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def run_example(marker: str) -> tuple[str, str]:
    """Run the README's python block that contains ``marker``; return its code and what it printed."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if marker in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    return example, out.getvalue()


def test_pyg_example_runs() -> None:
    assert run_example("TinyNet")[1].strip() == "torch.Size([2, 10])"


def test_readme_names_the_commands() -> None:
    text = README.read_text()
    assert "make test" in text and "make demo" in text


def test_points_example_runs_and_prints_what_it_says() -> None:
    example, printed = run_example("Points.from_dense")
    lines = printed.strip().splitlines()
    assert lines == ["2 (700, 1100) [0, 700, 1800]", "(2, 1100, 3) None (2, 1100)",
                     "[(175, 275), (44, 69), (11, 18)]", "torch.Size([2, 40]) torch.Size([2, 40])"]
    comments = re.findall(r"print\(.*\)\s+# (.*)", example)
    assert [c.strip() for c in comments[:3]] == lines[:3]  # what the README says it prints


def test_samplers_example_runs_and_prints_what_it_says() -> None:
    example, printed = run_example('subsample(points, "hilbert"')
    lines = printed.strip().splitlines()
    assert lines == ["(25000, 12500) 37500", "(1920, 1920) torch.Size([150000])"]
    assert [c.strip() for c in re.findall(r"print\(.*\)\s+# (.*)", example)] == lines
