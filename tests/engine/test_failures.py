"""Every failure a user can cause is one ``error:`` line with exit code 2, names its cause, and touches nothing;
a crash leaves nothing stale behind; a bug keeps its traceback.

Each case was found by running the scripts as a new user would, or by killing and corrupting runs.
"""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from jpegs import damaged_mid_stream

from pointcoc.engine.images import main as train_images
from pointcoc.engine.points import main as train_points
from pointcoc.engine.validate import main as validate
from pointcoc.errors import InputError
from pointcoc.models import PointCoC, read_checkpoint

from runs import image_args, one_line_error, point_args, refused, run_python, run_script, torchrun
from snapshots import snapshot


@pytest.fixture(scope="module")
def finished_run(modelnet_dir, tmp_path_factory) -> Path:
    """A finished 2-epoch pointcoc_nano run (last.pt, best.pt, logs)."""
    out = tmp_path_factory.mktemp("done") / "run"
    train_points(point_args(modelnet_dir, out))
    return out


def _copy_run(run: Path, to: Path) -> Path:
    """A copy of ``run`` that also holds a temporary file of a killed write: a refused run must not even clean."""
    shutil.copytree(run, to)
    (to / ".last.pt.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    return to


def test_resume_from_an_empty_last_pt(modelnet_dir, finished_run, tmp_path) -> None:
    """Before: IndexError in the error-message code (``str(err).splitlines()[0]`` of an empty message).

    Run as a script: the refusal is the last line of stderr, with no traceback."""
    run = _copy_run(finished_run, tmp_path / "run")
    (run / "last.pt").write_bytes(b"")
    before = snapshot(run)
    message = one_line_error(run_script("train_modelnet.py", *point_args(modelnet_dir, run, "--resume")))
    assert f"checkpoint '{run / 'last.pt'}' is empty (0 bytes)" in message
    assert snapshot(run) == before


@pytest.mark.parametrize("where", ["run dir", "file"])
def test_resume_with_another_model(modelnet_dir, finished_run, tmp_path, where, caplog) -> None:
    """Before: a 62-line RuntimeError from load_state_dict. The run's own model is named."""
    run = _copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    if where == "run dir":
        args = point_args(modelnet_dir, run, "--resume", "--model", "pointcoc_tiny")
    else:
        args = point_args(modelnet_dir, tmp_path / "other", "--resume", str(run / "last.pt"), "--model",
                          "pointcoc_tiny")
    message = refused(train_points, args, caplog)
    assert f"--resume {run / 'last.pt'}: the checkpoint is a run of model pointcoc_nano, but this run builds " \
           "pointcoc_tiny; pass --model pointcoc_nano" in message
    assert snapshot(run) == before and not (tmp_path / "other").exists()


def test_resume_with_mismatched_weights_and_state(modelnet_dir, finished_run, tmp_path, caplog) -> None:
    """A checkpoint without its config (or of another head size) still fails cleanly: the keys are listed."""
    ckpt = read_checkpoint(finished_run / "last.pt")
    ckpt.pop("config")
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("head")}
    torch.save(ckpt, tmp_path / "headless.pt")
    message = refused(train_points, point_args(modelnet_dir, tmp_path / "a", "--resume", str(tmp_path / "headless.pt")),
                      caplog)
    assert f"--resume {tmp_path / 'headless.pt'} does not fit PointCoC: missing keys: ['head." in message
    torch.save({"state_dict": ckpt["model"]}, tmp_path / "weights_only.pt")  # weights, no training state
    message = refused(train_points, point_args(modelnet_dir, tmp_path / "b", "--resume",
                                               str(tmp_path / "weights_only.pt")), caplog)
    assert "not a pointcoc training checkpoint (it lacks model, optimizer, scheduler, epoch, best_metric, rng)" \
        in message
    ckpt = read_checkpoint(finished_run / "last.pt")
    ckpt["optimizer"]["param_groups"] = ckpt["optimizer"]["param_groups"] * 2
    torch.save(ckpt, tmp_path / "two_groups.pt")
    message = refused(train_points, point_args(modelnet_dir, tmp_path / "c", "--resume",
                                               str(tmp_path / "two_groups.pt")), caplog)
    assert "its optimizer, schedule or EMA state does not fit this run" in message
    assert not any((tmp_path / d).exists() for d in "abc")


def test_validate_reports_another_models_checkpoint(modelnet_dir, finished_run, caplog) -> None:
    message = refused(validate, ["--model", "pointcoc_tiny", "--checkpoint", str(finished_run / "last.pt"),
                                 "--dataset", "modelnet40", "--data-dir", str(modelnet_dir), "--num-points", "128",
                                 "--device", "cpu", "--workers", "0"], caplog)
    assert f"checkpoint '{finished_run / 'last.pt'}' does not fit PointCoC" in message
    message = refused(validate, ["--model", "pointcoc_nano", "--dataset", "modelnet40", "--data-dir", str(modelnet_dir),
                                 "--output", str(modelnet_dir / "no_such_folder" / "m.json")], caplog)
    assert f"needs the folder {modelnet_dir / 'no_such_folder'}, which does not exist" in message  # before evaluating


def test_output_dir_that_is_a_file(modelnet_dir, tmp_path, caplog) -> None:
    """Before: a FileExistsError traceback."""
    (tmp_path / "taken.txt").write_text("mine\n")
    message = refused(train_points, point_args(modelnet_dir, tmp_path / "taken.txt"), caplog)
    assert f"--output-dir {tmp_path / 'taken.txt'} is an existing file, not a folder" in message
    message = refused(train_points, point_args(modelnet_dir, tmp_path / "taken.txt" / "run"), caplog)
    assert f"is inside {tmp_path / 'taken.txt'}, which is a file" in message
    assert (tmp_path / "taken.txt").read_text() == "mine\n" and sorted(tmp_path.iterdir()) == [tmp_path / "taken.txt"]


def test_damaged_checkpoints_say_what_is_wrong(modelnet_dir, finished_run, tmp_path, caplog) -> None:
    """Before: every damaged file got PyTorch's advice that weights_only=False "will likely succeed"."""
    good = (finished_run / "last.pt").read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    cases = {"truncated.pt": (good[: len(good) // 3], "is truncated: the zip archive that torch.save writes ends"),
             "random.pt": (b"\x07" + noise, "is not a PyTorch checkpoint: it starts with bytes")}
    for name, (data, needle) in cases.items():
        (tmp_path / name).write_bytes(data)
        message = refused(train_points, point_args(modelnet_dir, tmp_path / "r", "--resume", str(tmp_path / name)),
                          caplog)
        assert needle in message and str(tmp_path / name) in message, message
        assert "weights_only=False" not in caplog.text and "\x1b" not in caplog.text
    message = refused(validate, ["--model", "pointcoc_nano", "--checkpoint", str(tmp_path / "truncated.pt"),
                                 "--dataset", "modelnet40", "--data-dir", str(modelnet_dir), "--num-points", "128",
                                 "--device", "cpu", "--workers", "0"], caplog)
    assert "is truncated" in message and "weights_only=False" not in caplog.text
    assert not (tmp_path / "r").exists()


# A training process that is killed (SIGKILL) during its n-th checkpoint write, after part of the file is out.
_KILLED_DURING_WRITE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from pointcoc.engine.points import main
    real_save, calls = torch.save, [0]
    def save(obj, fh, *args, **kwargs):
        calls[0] += 1
        if calls[0] == int(os.environ.get("KILL_AT_SAVE", "0")):
            fh.write(b"PK\\x03\\x04 half a checkpoint")
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, fh, *args, **kwargs)
    torch.save = save
    main(sys.argv[1:])
""")


def test_killed_checkpoint_writes_leave_nothing_stale(modelnet_dir, tmp_path, monkeypatch) -> None:
    """Before: every kill during a checkpoint write left a ``.last.pt.*.tmp`` behind (4 after 4 kills)."""
    out = tmp_path / "run"
    args = point_args(modelnet_dir, out, "--epochs", "3")
    monkeypatch.setenv("KILL_AT_SAVE", "2")  # epoch 1's last.pt is written, epoch 2's is killed half-way
    first = run_python(_KILLED_DURING_WRITE, *args)
    assert first.returncode == -9, first.stderr[-2000:]
    stale_first = [p.name for p in out.glob(".last.pt.*.tmp")]
    assert len(stale_first) == 1 and read_checkpoint(out / "last.pt")["epoch"] == 0  # the old last.pt is intact
    second = run_python(_KILLED_DURING_WRITE, *args, "--resume")  # resumed, then killed during epoch 3's write
    assert second.returncode == -9, second.stderr[-2000:]
    assert f"removed 1 temporary file(s) left by interrupted writes: {stale_first[0]}" in second.stderr
    stale_second = [p.name for p in out.glob(".last.pt.*.tmp")]
    assert len(stale_second) == 1 and stale_second != stale_first  # one per kill, never piling up
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    monkeypatch.delenv("KILL_AT_SAVE")
    res = run_script("train_modelnet.py", *args, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"removed 1 temporary file(s) left by interrupted writes: {stale_second[0]}" in res.stderr
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3


def test_a_bug_keeps_its_traceback(modelnet_dir, tmp_path, monkeypatch) -> None:
    """Only input errors are one line: a ValueError from deep inside (a bug) propagates, so Python prints its
    traceback and exits with code 1 (exit_on_input_error's own test checks the same with a plain ValueError)."""
    def forward(self, *args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(PointCoC, "forward", forward)
    with pytest.raises(ValueError, match="an internal bug") as info:
        train_points(point_args(modelnet_dir, tmp_path / "run"))
    assert not isinstance(info.value, InputError)
    assert any(frame.name == "train_one_epoch" for frame in traceback.extract_tb(info.tb))


def _damaged_jpeg(path: Path) -> Path:
    """A photo-like JPEG zeroed mid-stream: Pillow alone decodes it to garbage without a word."""
    path.write_bytes(damaged_mid_stream("zeroed", size=128))
    return path


def test_damaged_images_are_skipped_and_counted(image_dir, tmp_path, caplog) -> None:
    """Before: a corrupt JPEG among valid images was a sample, and the run ended with exit 0 and no warning."""
    data = shutil.copytree(image_dir, tmp_path / "images")
    bad_train = _damaged_jpeg(data / "train" / "dark" / "broken.JPEG")
    bad_val = _damaged_jpeg(data / "val" / "bright" / "broken.JPEG")
    before = snapshot(data)
    out = tmp_path / "skip"
    res = run_script("train_imagenet.py", *image_args(data, out, "--workers", "2"))  # warnings from the workers
    assert res.returncode == 0, res.stderr[-3000:]
    for bad in (bad_train, bad_val):
        assert f"skipped {bad}: damaged image (corrupt JPEG data: " in res.stderr
    assert "epoch 1: skipped 1 damaged sample(s) in training and 1 in validation" in res.stderr
    header, row = (out / "metrics.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert float(values["train_skipped"]) == 1 and float(values["val_skipped"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_train_skipped"] == 1 and summary["final_val_skipped"] == 1
    # validate.py counts it the same way; --bad-images error stops at it instead, naming it
    metrics = validate(["--model", "coc_tiny_plain", "--checkpoint", str(out / "last.pt"), "--dataset", "images",
                        "--data-dir", str(data), "--img-size", "32", "--device", "cpu", "--workers", "0"])
    assert metrics["skipped"] == 1 and metrics["samples"] == 9  # 4 + 4 intact val images and the damaged one
    strict = {train_images: image_args(data, tmp_path / "strict", "--workers", "2", "--bad-images", "error"),
              validate: ["--model", "coc_tiny_plain", "--dataset", "images", "--data-dir", str(data), "--img-size",
                         "32", "--device", "cpu", "--workers", "2", "--bad-images", "error"]}
    for main, args in strict.items():  # the error crosses from a DataLoader worker into the main process
        message = refused(main, args, caplog)
        assert message.startswith(f"{bad_train if main is train_images else bad_val}: damaged image "
                                  "(corrupt JPEG data: "), message
    assert snapshot(data) == before and not (tmp_path / "strict" / "last.pt").exists()


def test_real_image_smoke_run_with_the_default_recipe(real_image_dir, tmp_path) -> None:
    """One full epoch of train_imagenet.py with the default recipe (RandAugment rand-m9-mstd0.5-inc1, colour
    jitter, random erasing, Mixup/CutMix, label smoothing) on real pictures in mixed formats and modes.

    Before: stopped inside epoch 1 with ``error: bits must be between or equal to 1 and 8`` (Pillow 13)."""
    out = tmp_path / "real"
    res = run_script("train_imagenet.py", "--data-dir", str(real_image_dir), "--model", "coc_tiny_plain",
                     "--img-size", "64", "--epochs", "1", "--batch-size", "16", "--workers", "2", "--device", "cpu",
                     "--output-dir", str(out), "--no-tensorboard")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["final_train_skipped"] == 0 and summary["final_val_skipped"] == 0
    assert len(summary["final_per_class"]) == 10
    header, row = (out / "metrics.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert np.isfinite(float(values["train_loss"])) and 0 <= float(values["val_top1"]) <= 100


def test_ddp_ranks_skip_an_empty_step_together(image_dir, tmp_path) -> None:
    """Under torchrun a rank whose batch held only damaged images skips the step, and so does every other rank
    (DDP steps in lockstep: without that, this run hung; a lone skip leaves the others waiting for its gradients)."""
    data = shutil.copytree(image_dir, tmp_path / "images")
    for cls in ("dark", "bright"):  # half of the training images damaged: some 2-image batches lose both
        for i in range(6):
            _damaged_jpeg(data / "train" / cls / f"broken{i}.JPEG")
    out = tmp_path / "ddp"
    res = torchrun("train_imagenet.py", *image_args(data, out, "--batch-size", "2", "--epochs", "2"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipped a training step on every rank" in res.stderr
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["train_skipped"]) > 0 for r in rows)
