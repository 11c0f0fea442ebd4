"""Importing pointcoc and running a model prints no third-party warnings the user cannot act on."""

from __future__ import annotations

import subprocess
import sys

_SNIPPET = """
import torch, pointcoc
model = pointcoc.create_model("pointcoc_nano").eval()
with torch.no_grad():
    print(tuple(model(torch.randn(2, 256, 3)).shape))
"""


def test_import_and_forward_are_warning_free() -> None:
    # -W error turns any warning (PyG's import-time ones included) into a failure of the child process.
    out = subprocess.run([sys.executable, "-W", "error", "-c", _SNIPPET], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(2, 40)"), out.stdout
