"""The CPU allocator setting: freed memory is reused (no page faults on the next step), and the CLI applies it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from pointcoc.engine import cli, points, runtime

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the allocator setting applies to glibc Linux processes only")

# A fresh process runs training steps of an MLP whose activations are 64 MB each and counts the page
# faults of three steps after three warm-up steps.
_PROBE = """
import json, resource, sys, torch
from pointcoc.engine.runtime import apply_cpu_allocator
applied = apply_cpu_allocator(sys.argv[1])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.GELU(), torch.nn.Linear(512, 64))
x = torch.randn(32768, 64)
def step():
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
before = faults()
for _ in range(3):
    step()
print(json.dumps({"applied": applied, "faults": faults() - before, "pages": 3 * 64 * 2**20 // resource.getpagesize()}))
"""


def _probe(choice: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, choice], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_reuse_keeps_freed_memory_and_system_does_not() -> None:
    reuse, system = _probe("reuse"), _probe("system")
    assert reuse["applied"] is True and system["applied"] is False
    # The system allocator maps every large activation afresh: each step faults in several 64 MB blocks.
    assert system["faults"] > system["pages"], system
    # Reused heap memory is already resident (measured: 13-17x fewer faults).
    assert reuse["faults"] < system["faults"] / 5, (reuse, system)


def test_bad_choice_names_the_option() -> None:
    with pytest.raises(ValueError, match="--cpu-allocator"):
        runtime.apply_cpu_allocator("jemalloc")


def test_training_cli_applies_the_choice(monkeypatch, tmp_path) -> None:
    seen: list[str] = []
    monkeypatch.setattr(cli, "apply_cpu_allocator", lambda choice: seen.append(choice) or False)
    monkeypatch.setattr(cli, "fit", lambda cfg, task: {"cpu_allocator": cfg["cpu_allocator"]})
    base = ["--dataset", "demo", "--model", "pointcoc_nano", "--output-dir", str(tmp_path)]
    assert points.main(base) == {"cpu_allocator": "reuse"}
    assert points.main([*base, "--cpu-allocator", "system"]) == {"cpu_allocator": "system"}
    assert seen == ["reuse", "system"]


# A fresh process runs a 16 MB allocate-touch-free twice (the warm-up), then measures the peak resident size of a
# third run above the resident size before it, as scripts/benchmark.py does.
_PEAK = """
import json, sys, torch
from pointcoc.engine import runtime
applied = runtime.release_freed_memory() if sys.argv[1] == "release" else False
def touch():
    t = torch.empty(4 * 2**20)  # 16 MB, below glibc's 32 MB dynamic-threshold cap
    t.fill_(1.0)
    del t
def status(field):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(field + ":"))
touch(); touch()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
touch()
print(json.dumps({"applied": applied, "peak_mb": status("VmHWM") - base}))
"""


@glibc_only
def test_release_makes_the_resident_peak_follow_live_tensors() -> None:
    def peak(mode: str) -> dict:
        out = subprocess.run([sys.executable, "-c", _PEAK, mode], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    release, system = peak("release"), peak("system")
    assert release["applied"] is True
    assert 15 < release["peak_mb"] < 20, release  # the 16 MB tensor is seen
    # With glibc's dynamic thresholds the warm-up's freed block stays resident and hides the tensor.
    assert system["peak_mb"] < 4, system


def test_one_process_cannot_switch_between_modes(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "_mode", "release")
    with pytest.raises(RuntimeError, match="already set to 'release'"):
        runtime.reuse_freed_memory()
    assert runtime.release_freed_memory() is True
