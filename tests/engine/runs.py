"""Command lines and runners shared by the end-to-end training tests of this folder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def point_args(data: Path, out: Path, *extra: str) -> list[str]:
    """A 2-epoch ``pointcoc_nano`` run on the tiny ModelNet40-layout set (seconds on a CPU)."""
    return ["--dataset", "modelnet40", "--data-dir", str(data), "--model", "pointcoc_nano", "--num-points", "128",
            "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--min-lr", "0.001", "--workers", "0",
            "--device", "cpu", "--seed", "3", "--output-dir", str(out), "--no-tensorboard", *extra]


def image_args(data: Path, out: Path, *extra: str) -> list[str]:
    """A 1-epoch ``coc_tiny_plain`` run at 32 px with the default (upstream) recipe."""
    return ["--data-dir", str(data), "--model", "coc_tiny_plain", "--img-size", "32", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--output-dir", str(out), "--no-tensorboard",
            *extra]


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python scripts/<script> args...`` in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def torchrun(script: str, *args: str, nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=N scripts/<script> args...`` on the CPU (gloo), one thread per
    process (two processes on two cores)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -c code args...`` in a fresh process (for runs that patch something first)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """The message of a run refused with an input error: exit code 2, no traceback, one ``error:`` line, last."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.rstrip("\n").splitlines()
    errors = [line for line in lines if " error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr[-3000:]
    return errors[0].split(" error: ", 1)[1]


def refused(main: Callable[[list[str]], Any], args: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """Run a script's ``main(args)`` in this process; it must exit with code 2 after one ``error:`` log line."""
    caplog.clear()
    with pytest.raises(SystemExit) as exc, caplog.at_level(logging.INFO):
        main(args)
    assert exc.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "\n" not in errors[0], errors
    return errors[0][len("error: "):]
