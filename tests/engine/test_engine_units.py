"""Engine pieces: metrics, PointMLP's smoothed loss, atomic checkpoints, safe loading, RNG state, config files,
the one-line reporting of input errors."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pointcoc.engine.checkpoint import copy_atomic, rng_state, save_atomic, set_rng_state
from pointcoc.engine.cli import exit_on_input_error
from pointcoc.engine.config import parse_config
from pointcoc.engine.losses import smooth_cross_entropy
from pointcoc.engine.metrics import ClassificationMeter
from pointcoc.errors import InputError, input_error_message, strip_ansi
from pointcoc.models import read_checkpoint


def test_meter_oa_macc_per_class_topk() -> None:
    meter = ClassificationMeter(3, topk=(1, 2))
    logits = torch.tensor([[3.0, 2, 1], [3, 2, 1], [1, 3, 2], [1, 2, 3], [2, 3, 1], [1, 2, 3]])
    target = torch.tensor([0, 1, 1, 2, 0, 0])  # predictions 0, 0, 1, 2, 1, 2
    meter.update(logits[:3], target[:3], loss=1.0)
    meter.update(logits[3:], target[3:], loss=2.0)
    m = meter.reduce().compute()
    assert m["oa"] == pytest.approx(100 * 3 / 6)
    assert m["per_class"] == pytest.approx([100 / 3, 50.0, 100.0])
    assert m["macc"] == pytest.approx((100 / 3 + 50 + 100) / 3)
    # top-2: sample 1 (label 1: second best) and 4 (label 0: second best) also hit; sample 5 (label 0) misses
    assert m["top2"] == pytest.approx(100 * 5 / 6)
    assert m["loss"] == pytest.approx(1.5)


def test_meter_ignores_absent_classes_in_macc() -> None:
    meter = ClassificationMeter(4)
    meter.update(torch.eye(4)[[0, 1]], torch.tensor([0, 1]))
    m = meter.compute()
    assert m["macc"] == 100.0 and np.isnan(m["per_class"][3])


def test_pointmlp_label_smoothing() -> None:
    logits, target = torch.randn(5, 4), torch.tensor([0, 3, 2, 1, 1])
    soft = torch.full((5, 4), 0.2 / 3).scatter(1, target[:, None], 0.8)
    ref = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(smooth_cross_entropy(logits, target, 0.2), ref)
    torch.testing.assert_close(smooth_cross_entropy(logits, target, 0.0), F.cross_entropy(logits, target))
    # not PyTorch's form, which gives the gold class 1 - eps + eps / C
    assert not torch.allclose(smooth_cross_entropy(logits, target, 0.2),
                              F.cross_entropy(logits, target, label_smoothing=0.2))


def test_save_atomic_keeps_the_old_file_on_a_crash(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert read_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "a temporary file was left behind"


def test_copy_atomic_copies_the_bytes(tmp_path) -> None:
    save_atomic({"epoch": 3, "w": torch.arange(5)}, tmp_path / "last.pt")
    copy_atomic(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


class _Code:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def _damaged_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files a user meets instead of a checkpoint: (path, what the error must say)."""
    torch.save({"model": {"w": torch.randn(2000)}}, folder / "good.pt")
    good = (folder / "good.pt").read_bytes()
    torch.save({"w": torch.randn(200)}, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    legacy = (folder / "legacy.pt").read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    files = {
        "empty.pt": (b"", "is empty (0 bytes)"),
        "truncated.pt": (good[: len(good) // 2], "is truncated: the zip archive that torch.save writes ends early"),
        "random.pt": (b"\x13" + noise, "is not a PyTorch checkpoint: it starts with bytes"),
        "text.pt": (b"model weights go here\n", "is not a PyTorch checkpoint"),
        "pickle_noise.pt": (b"\x80" + noise, "is damaged: its pickle data does not unpickle"),
        "legacy_truncated.pt": (legacy[: len(legacy) // 2], "is truncated or damaged: its pickle data cannot be read"),
    }
    out = {}
    for name, (data, needle) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, needle)
    torch.save({"model": _Code()}, folder / "code.pt")
    out["code.pt"] = (folder / "code.pt", "was refused, not loaded: it holds a pickled eval,")
    return out


def test_read_checkpoint_says_what_is_wrong(tmp_path) -> None:
    """Each damaged file gets its own diagnosis; never PyTorch's advice to retry with weights_only=False."""
    for name, (path, needle) in _damaged_checkpoints(tmp_path).items():
        before = path.read_bytes()
        with pytest.raises(InputError) as info:
            read_checkpoint(path)
        message = str(info.value)
        assert needle in message and str(path) in message, (name, message)
        assert "weights_only=False" not in message and "\x1b" not in message and "\n" not in message, (name, message)
        assert path.read_bytes() == before
    assert read_checkpoint(tmp_path / "legacy.pt")["w"].shape == (200,)  # the legacy format still loads
    with pytest.raises(InputError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="is not a file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_read_checkpoint_under_random_damage(tmp_path, legacy) -> None:
    """Truncations and flipped bytes anywhere: always an InputError naming the file, never another exception."""
    state = {"model": {f"layer{i}.weight": torch.randn(8, 8) for i in range(4)}, "epoch": 3, "rng": {"seed": 1}}
    torch.save(state, tmp_path / "good.pt", _use_new_zipfile_serialization=not legacy)
    good = (tmp_path / "good.pt").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "damaged.pt"
    refused = 0
    for trial in range(120):
        data = bytearray(good)
        if trial % 2:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            for at in rng.integers(0, len(data), int(rng.integers(1, 6))):
                data[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            read_checkpoint(path)  # some damage leaves the data readable (a changed weight): that is fine
        except InputError as err:
            assert str(path) in str(err) and "weights_only=False" not in str(err), str(err)
            refused += 1
    assert refused >= 60, f"only {refused} of 120 damaged files were refused: the damage does not reach the reader"


def test_input_error_message_strips_escapes_and_worker_tracebacks() -> None:
    assert strip_ansi("\x1b[1mbold\x1b[0m and \x1b[31;1mred\x1b[0m") == "bold and red"
    wrapped = InputError("Caught InputError in DataLoader worker process 1.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 3, in f\n    raise InputError(msg)\n"
                         "pointcoc.errors.InputError: data/a.png: damaged image (x)\n")
    assert input_error_message(wrapped) == "data/a.png: damaged image (x)"
    assert input_error_message(InputError("")) == "InputError with no message"  # never an IndexError


def test_exit_on_input_error_only_for_input_errors(caplog) -> None:
    with pytest.raises(SystemExit) as exc, caplog.at_level(logging.ERROR):
        with exit_on_input_error():
            raise InputError("--foo 3: too large")
    assert exc.value.code == 2 and caplog.records[-1].getMessage() == "error: --foo 3: too large"
    with pytest.raises(ValueError, match="a bug"):  # a plain ValueError is a bug: it keeps its traceback
        with exit_on_input_error():
            raise ValueError("a bug")


def test_rng_state_round_trip_through_a_checkpoint(tmp_path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_atomic({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    set_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"])
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_config_file_and_command_line(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=300)
    (tmp_path / "run.yaml").write_text("lr: 0.5\nepochs: 10\n")
    cfg = parse_config(parser, ["--config", str(tmp_path / "run.yaml"), "--epochs", "3"])
    assert cfg["lr"] == 0.5 and cfg["epochs"] == 3
    (tmp_path / "bad.yaml").write_text("learning_rate: 1\n")
    with pytest.raises(SystemExit) as exc:
        parse_config(parser, ["--config", str(tmp_path / "bad.yaml")])
    assert exc.value.code == 2
    # A value outside an option's choices is refused like on the command line (set_defaults skips that check).
    parser.add_argument("--cpu-allocator", choices=["reuse", "system"], default="reuse")
    (tmp_path / "choice.yaml").write_text("cpu_allocator: jemalloc\n")
    with pytest.raises(SystemExit) as exc:
        parse_config(parser, ["--config", str(tmp_path / "choice.yaml")])
    assert exc.value.code == 2
    (tmp_path / "ok.yaml").write_text("cpu-allocator: system\n")
    assert parse_config(parser, ["--config", str(tmp_path / "ok.yaml")])["cpu_allocator"] == "system"


@pytest.mark.parametrize("script", ["points", "images", "validate"])
def test_option_values_are_checked_on_the_command_line_and_in_yaml(script, tmp_path, capsys) -> None:
    """Before: --batch-size 0, --workers -1 or --lr -1 ended in a traceback from DataLoader or torch.optim."""
    import importlib

    parser = importlib.import_module(f"pointcoc.engine.{script}").build_parser()
    required = ["--model", "pointcoc_nano", "--dataset", "demo"] if script == "validate" else []
    bad = {"--batch-size": "0", "--workers": "-1"}
    if script != "validate":
        bad.update({"--lr": "-1", "--epochs": "0", "--smoothing": "1.5", "--clip-grad": "0", "--weight-decay": "nan"})
    for option, value in bad.items():
        with pytest.raises(SystemExit) as exc:
            parse_config(parser, [*required, option, value])
        assert exc.value.code == 2
        assert f"argument {option}: must be" in capsys.readouterr().err
    if script != "validate":  # a YAML file gets the same checks
        (tmp_path / "run.yaml").write_text("batch_size: 0\n")
        with pytest.raises(SystemExit) as exc:
            parse_config(parser, ["--config", str(tmp_path / "run.yaml")])
        assert exc.value.code == 2 and "batch_size must be a positive integer, got '0'" in capsys.readouterr().err
        (tmp_path / "run.yaml").write_text("batch_size: 4\nlr: 1\nworkers: 0\n")
        cfg = parse_config(parser, ["--config", str(tmp_path / "run.yaml")])
        assert (cfg["batch_size"], cfg["lr"], cfg["workers"]) == (4, 1.0, 0) and isinstance(cfg["lr"], float)
