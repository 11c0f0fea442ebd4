"""Importing pointcoc and running a model shows none of the third-party warnings pointcoc silences."""

from __future__ import annotations

import subprocess
import sys

_SNIPPET = """
import torch, pointcoc
model = pointcoc.create_model("pointcoc_nano").eval()
with torch.no_grad():
    print(tuple(model(torch.randn(2, 256, 3)).shape))
"""


def test_import_and_forward_show_no_pyg_import_warnings() -> None:
    # -W always shows every warning once per call site; PyG's two import-time warnings must not be among them.
    out = subprocess.run([sys.executable, "-W", "always", "-c", _SNIPPET], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(2, 40)"), out.stdout
    assert "torch.jit.script" not in out.stderr, out.stderr
    assert "'torch-cluster' is no longer necessary" not in out.stderr, out.stderr
