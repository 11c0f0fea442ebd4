#!/usr/bin/env python
"""Draw the cluster assignment of one stage/block/head of a context-cluster model as a PNG.

Image models (CoC): the image beside the image tinted by cluster, with cluster boundaries.
Point models (PointCoC) and part segmenters (PointCoCSeg: the encoder's stages, then the decoder's levels): a 3D
scatter of the stage's points coloured by cluster, in several views.
The assignments are the model's own (``pointcoc.blocks.record_assignments``).

Examples:
    python scripts/visualize_clusters.py --model coc_tiny --checkpoint coc_tiny.pth.tar --image cat.jpg --stage 1
    python scripts/visualize_clusters.py --model pointcoc_tiny --checkpoint runs/demo-x/best.pt --points demo:3
    python scripts/visualize_clusters.py --model pointcoc_small --points cloud.txt --stage 1 --head 2
    python scripts/visualize_clusters.py --model pointcoc_seg_tiny --checkpoint runs/partseg/best.pt --points demo:0
    python scripts/visualize_clusters.py --model pointcoc_seg_tiny --checkpoint runs/partseg/best.pt \
        --points chair.ply --category Chair --stage 4

--checkpoint takes a pointcoc training checkpoint (its class count, image size and number of
points are used unless given) or an upstream one; without it the weights are random. --points takes a .npy
or text file [N, 3+] (only xyz is used) or demo:<index>, a cloud of the demo test split. Part segmenters read
their points with normals (a .ply/.npy/.npz/.txt file, see pointcoc.data.read_point_file, with --category) or
demo:<index>, a shape of the demo part set's test split.
Bad input exits with code 2 and a one-line error.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pointcoc.data import (
    PartCategories,
    ShapeNetPart,
    ensure_demo_data,
    ensure_partseg_demo,
    modelnet40,
    read_point_file,
)
from pointcoc.data import load_image as pdata_load_image
from pointcoc.data.transforms import NormalizeUnitSphere
from pointcoc.engine.cli import exit_on_input_error
from pointcoc.engine.predict import load_predictor, normalised_points
from pointcoc.errors import InputError
from pointcoc.models import (
    create_model,
    list_models,
    load_upstream_state_dict,
    model_kind,
    read_checkpoint,
    training_config,
    unwrap_state_dict,
)
from pointcoc.ops import fps
from pointcoc.visualize import (
    DEFAULT_VIEWS,
    draw_image_clusters,
    draw_point_clusters,
    image_assignment_map,
    mixer_name,
    point_assignments,
)

log = logging.getLogger("pointcoc.visualize_clusters")

DEFAULT_CLASSES = {"image": 1000, "point": 40}
TEXT_SUFFIXES = (".txt", ".xyz", ".pts", ".csv")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=list_models(), metavar="NAME",
                   help=f"a registered model: {', '.join(list_models())}")
    p.add_argument("--checkpoint", help="pointcoc (last.pt/best.pt) or upstream checkpoint; none: random weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image file (image models)")
    src.add_argument("--points", help="point models: a .npy or text file [N, 3+], or demo:<index> (demo test split)")
    p.add_argument("--category", help="part segmenters: the shape's category (demo:<index> knows its own)")
    p.add_argument("--stage", type=int, default=0,
                   help="stage (part segmenters: the encoder's stages, then the decoder's levels, deepest first)")
    p.add_argument("--block", type=int, default=0, help="block within the stage")
    p.add_argument("--head", type=int, default=0, help="context-cluster head")
    p.add_argument("--num-classes", type=int,
                   help="classes of the model's head (default: the checkpoint's, else 1000 for images / 40 for points)")
    p.add_argument("--img-size", type=int,
                   help="images: resize/crop size (default: the pointcoc checkpoint's img_size, else 224)")
    p.add_argument("--denominator", choices=["weights", "count"],
                   help="image models: aggregation denominator ('count' for early upstream checkpoints)")
    p.add_argument("--num-points", type=int,
                   help="points: clouds with more points are reduced to this many (FPS; demo: the first ones); "
                        "default: the pointcoc checkpoint's num_points, else 1024")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="points from a file: keep the coordinates (default: centre and scale to the unit sphere)")
    p.add_argument("--data-dir", default="data/demo", help="root of the demo data, for --points demo:<index>")
    p.add_argument("--views", default=";".join(f"{e:g},{a:g}" for e, a in DEFAULT_VIEWS),
                   help="points: 'elev,azim;elev,azim;...' in degrees, one panel each")
    p.add_argument("--alpha", type=float, default=0.5, help="images: tint strength")
    p.add_argument("--output", help="the PNG to write (default: runs/vis/<model>_<input>_s<stage>b<block>h<head>.png)")
    return p


# ----------------------------------------------------------------------------- model
def _head_classes(model: nn.Module, ckpt: Any) -> int | None:
    """Classes of the checkpoint's head: the rows of the weight of the model's last ``num_classes``-wide Linear."""
    heads = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == getattr(model, "num_classes", None)]
    if not heads:
        return None
    try:
        state = unwrap_state_dict(ckpt)
    except ValueError:
        return None  # the strict load that follows names the problem
    weight = state.get(f"{heads[-1]}.weight")
    return int(weight.shape[0]) if isinstance(weight, Tensor) and weight.dim() >= 1 else None


def build_model(cfg: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The model of ``cfg["model"]`` with the checkpoint loaded, and the checkpoint's training config (or ``{}``).

    The class count is ``--num-classes``, else the pointcoc checkpoint's ``class_names``, else the
    rows of the checkpoint's head weight, else 1000 (images) / 40 (points).
    """
    name = cfg["model"]
    kind = model_kind(name)
    kwargs: dict[str, Any] = {}
    if cfg.get("denominator"):
        if kind != "image":
            raise InputError(f"--denominator is for image models; {name} is a point model")
        kwargs["denominator"] = cfg["denominator"]
    if cfg.get("num_classes") is not None and cfg["num_classes"] < 1:
        raise InputError(f"--num-classes must be >= 1, got {cfg['num_classes']}")
    ckpt = read_checkpoint(cfg["checkpoint"]) if cfg.get("checkpoint") else None
    train_cfg = training_config(ckpt)
    if train_cfg.get("model") not in (None, name):
        raise InputError(f"--checkpoint {cfg['checkpoint']!r} was trained as {train_cfg['model']!r}; "
                         f"pass --model {train_cfg['model']}")
    num_classes = cfg.get("num_classes")
    if num_classes is None and isinstance(ckpt, dict) and isinstance(ckpt.get("class_names"), (list, tuple)):
        num_classes = len(ckpt["class_names"])
    model = create_model(name, num_classes=num_classes or DEFAULT_CLASSES[kind], **kwargs)
    if ckpt is None:
        log.warning("no --checkpoint: %s has random weights, so its clusters reflect the architecture, "
                    "not learnt features", name)
        return model, train_cfg
    if num_classes is None:
        found = _head_classes(model, ckpt)
        if found is not None and found != model.num_classes:
            model = create_model(name, num_classes=found, **kwargs)
    load_upstream_state_dict(model, ckpt, source=f"--checkpoint {str(cfg['checkpoint'])!r}")
    log.info("loaded %s into %s (%d classes)", cfg["checkpoint"], name, model.num_classes)
    return model, train_cfg


# ----------------------------------------------------------------------------- inputs
def load_image(path: str | Path, model: nn.Module, img_size: int) -> tuple[Tensor, np.ndarray]:
    """An image as the model sees it: ``[3, S, S]`` normalised (the model's timm eval transform) and the same
    resized/cropped image as uint8 RGB ``[S, S, 3]``."""
    from pointcoc.engine.images import eval_image_transform

    if img_size < 1:
        raise InputError(f"--img-size must be positive, got {img_size}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--image {str(path)!r} does not exist")
    img = pdata_load_image(path)  # a DamagedImageError (an InputError) names the file and the cause
    transform, data_cfg = eval_image_transform(img_size, model)  # what validation sees
    x = transform(img)
    mean = torch.tensor(data_cfg["mean"]).view(-1, 1, 1)
    std = torch.tensor(data_cfg["std"]).view(-1, 1, 1)
    rgb = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return x, rgb


def load_points(spec: str, num_points: int, normalize: bool = True,
                data_dir: str | Path = "data/demo") -> tuple[Tensor, str]:
    """``pos [n, 3]`` float32 and a label for the title, from a file or ``demo:<index>``.

    Files: ``.npy`` or text (``.txt``/``.xyz``/``.pts``/``.csv``; commas or whitespace) with one point
    per row ``[N, 3+]`` (columns after xyz are ignored); more than ``num_points`` points are reduced
    by farthest point sampling; centred and scaled to the unit sphere unless ``normalize`` is False.
    ``demo:<index>``: that cloud of the demo test split (generated under ``data_dir`` if absent),
    its first ``num_points`` points.
    """
    if num_points < 1:
        raise InputError(f"--num-points must be positive, got {num_points}")
    demo = re.fullmatch(r"demo:(\S*)", spec)
    if demo:
        if not demo.group(1).isdigit():
            raise InputError(f"--points {spec!r}: expected demo:<index> with a non-negative integer index")
        index = int(demo.group(1))
        ds = modelnet40(ensure_demo_data(data_dir) / "points", "test", num_points)
        if index >= len(ds):
            raise InputError(f"--points {spec!r}: the demo test split has {len(ds)} clouds (indices 0..{len(ds) - 1})")
        pos, label = ds[index]
        return pos[:, :3].contiguous(), f"demo test #{index} ({ds.classes[label]})"
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--points {spec!r} does not exist (give a .npy/.txt file [N, 3+] or demo:<index>)")
    suffix = path.suffix.lower()
    if suffix != ".npy" and suffix not in TEXT_SUFFIXES:
        raise InputError(f"--points {spec!r}: unsupported file type {path.suffix!r}; use .npy or "
                         f"{'/'.join(TEXT_SUFFIXES)}")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(io.StringIO(path.read_text().replace(",", " ")), ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as err:  # ValueError: numpy's parse errors
        raise InputError(f"--points {spec!r} cannot be read: {err}") from err
    if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"--points {spec!r} must hold a numeric array [N, 3+] (one point per row), got "
                         f"{arr.dtype} {tuple(arr.shape)}")
    pos = torch.from_numpy(np.ascontiguousarray(arr[:, :3], dtype=np.float32))
    if not torch.isfinite(pos).all():
        raise InputError(f"--points {spec!r} holds NaN or infinite coordinates")
    if pos.shape[0] > num_points:
        pos = pos[fps(pos, num_points)]
    if normalize:
        pos = NormalizeUnitSphere()(pos)
    return pos, path.name


def build_segmenter(cfg: dict[str, Any]) -> tuple[nn.Module, dict[str, Any], PartCategories]:
    """A part segmenter: the checkpoint's model, config and part table (random weights and ShapeNetPart's
    table without a checkpoint)."""
    if cfg.get("checkpoint"):
        pred = load_predictor(cfg["checkpoint"], cfg["model"], "cpu")
        assert pred.categories is not None
        return pred.model, pred.config, pred.categories
    log.warning("no --checkpoint: %s has random weights, so its clusters reflect the architecture, "
                "not learnt features", cfg["model"])
    cats = PartCategories.standard()
    return (create_model(cfg["model"], num_classes=cats.num_parts, num_categories=cats.num_categories).eval(), {},
            cats)


def load_shape(cfg: dict[str, Any], categories: PartCategories) -> tuple[Tensor, Tensor | None, int, str]:
    """A part segmenter's input: ``pos [N, 3]`` (unit sphere), normals ``[N, 3]`` or None, the category index
    and a title, from ``demo:<index>`` (the demo part set's test split) or a point file with ``--category``."""
    spec = cfg["points"]
    demo = re.fullmatch(r"demo:(\S*)", spec)
    if demo:
        if not demo.group(1).isdigit():
            raise InputError(f"--points {spec!r}: expected demo:<index> with a non-negative integer index")
        ds = ShapeNetPart(ensure_partseg_demo(cfg.get("data_dir", "data/demo")), "test", num_points=None,
                          use_normals=True)
        index = int(demo.group(1))
        if index >= len(ds):
            raise InputError(f"--points {spec!r}: the demo part test split has {len(ds)} shapes")
        pts, cat, _ = ds[index]
        name = ds.categories.names[cat]
        if name not in categories.names:
            raise InputError(f"--points {spec!r} is a {name}; the model's categories are {list(categories.names)}")
        return pts[:, :3].contiguous(), pts[:, 3:6].contiguous(), categories.names.index(name), \
            f"demo part test #{index} ({name})"
    cloud = read_point_file(spec)
    name = cfg.get("category")
    if name not in categories.names:
        raise InputError(f"--category must be one of {', '.join(categories.names)} for {spec}, got {name!r}")
    pos = normalised_points(cloud.pos)  # in float64 first: large coordinates keep their precision
    normals = None if cloud.normals is None else torch.from_numpy(cloud.normals)
    return pos, normals, categories.names.index(name), f"{Path(spec).name} ({name})"


def parse_views(text: str) -> list[tuple[float, float]]:
    """``"20,-60;20,30"`` -> ``[(20.0, -60.0), (20.0, 30.0)]``."""
    try:
        views = [tuple(float(v) for v in part.split(",")) for part in text.split(";") if part.strip()]
    except ValueError:
        views = []
    if not views or any(len(v) != 2 for v in views):
        raise InputError(f"--views must be 'elev,azim;elev,azim;...' in degrees, got {text!r}")
    return views  # type: ignore[return-value]


# ----------------------------------------------------------------------------- main
def _default_output(cfg: dict[str, Any], source: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source)
    return Path("runs/vis") / f"{cfg['model']}_{stem}_s{cfg['stage']}b{cfg['block']}h{cfg['head']}.png"


def visualize(cfg: dict[str, Any]) -> Path:
    """Draw the figure ``cfg`` (the parsed options as a dict) asks for; return the PNG's path."""
    kind = model_kind(cfg["model"])
    if kind == "image" and cfg.get("image") is None:
        raise InputError(f"{cfg['model']} is an image model: give --image (not --points)")
    if kind != "image" and cfg.get("points") is None:
        raise InputError(f"{cfg['model']} is a point model: give --points (not --image)")
    if cfg.get("output") and Path(cfg["output"]).suffix.lower() != ".png":
        raise InputError(f"--output must be a .png file, got {cfg['output']!r}")
    if kind == "partseg":
        model, train_cfg, categories = build_segmenter(cfg)
    else:
        model, train_cfg = build_model(cfg)
    heads = model.get_submodule(mixer_name(model, cfg["stage"], cfg["block"])).num_heads
    if not 0 <= cfg["head"] < heads:  # bad arguments fail before any input is read
        raise InputError(f"--head must be in [0, {heads - 1}] (stage {cfg['stage']} block {cfg['block']} has "
                         f"{heads} heads), got {cfg['head']}")
    where = f"{cfg['model']} stage {cfg['stage']} block {cfg['block']} head {cfg['head']}"
    if kind == "image":
        img_size = cfg.get("img_size")
        if img_size is None:
            img_size = int(train_cfg.get("img_size") or 224)
        x, rgb = load_image(cfg["image"], model, img_size)
        assignment = image_assignment_map(model, x, cfg["stage"], cfg["block"], cfg["head"])
        out = Path(cfg.get("output") or _default_output(cfg, Path(cfg["image"]).stem))
        draw_image_clusters(rgb, assignment, out, title=f"{where}: {Path(cfg['image']).name} at {img_size}px",
                            alpha=cfg.get("alpha", 0.5))
        log.info("wrote %s: %d clusters on the %dx%d map of a %dx%d image", out, assignment.unique().numel(),
                 *assignment.shape, *rgb.shape[:2])
    else:
        views = parse_views(cfg["views"]) if cfg.get("views") else list(DEFAULT_VIEWS)
        num_points = cfg.get("num_points")
        if num_points is None:
            num_points = int(train_cfg.get("num_points") or 1024)
        if kind == "partseg":
            pos, normals, category, label = load_shape(cfg, categories)
            if getattr(model, "in_chans", 0) == 0:
                normals = None
            elif normals is None:
                raise InputError(f"--points {cfg['points']}: {cfg['model']} reads normals (nx, ny, nz) with the "
                                 "points and the file has none")
            stage_pos, clusters = point_assignments(model, pos, cfg["stage"], cfg["block"], cfg["head"], normals,
                                                    category)
        else:
            pos, label = load_points(cfg["points"], num_points, cfg.get("normalize", True),
                                     cfg.get("data_dir", "data/demo"))
            stage_pos, clusters = point_assignments(model, pos, cfg["stage"], cfg["block"], cfg["head"])
        source = cfg["points"].replace(":", "") if cfg["points"].startswith("demo:") else Path(cfg["points"]).stem
        out = Path(cfg.get("output") or _default_output(cfg, source))
        draw_point_clusters(stage_pos, clusters, out, views=views, title=f"{where}: {label}")
        log.info("wrote %s: %d clusters over the stage's %d points (of %d), %d views", out,
                 clusters.unique().numel(), stage_pos.shape[0], pos.shape[0], len(views))
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    cfg = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    with exit_on_input_error(log):
        return visualize(cfg)


if __name__ == "__main__":
    main()
