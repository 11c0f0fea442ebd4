"""Datasets and point transforms. Data code knows nothing about models.

Readers (each validates its data and raises an :class:`~pointcoc.errors.InputError`, a ``ValueError``,
naming the file and the problem):

* :func:`modelnet40` - the PointNet HDF5 release ``modelnet40_ply_hdf5_2048`` or any dataset
  in that layout (classes from ``shape_names.txt``);
* :func:`scanobjectnn` - ScanObjectNN ``h5_files`` (PB_T50_RS, OBJ_BG, OBJ_ONLY);
* :func:`shapenetpart` - ShapeNetPart part segmentation, the normal-resampled text release or
  the PointNet HDF5 release (16 categories, 50 parts);
* :func:`read_point_file` - a user's ``.ply``/``.npy``/``.npz``/``.txt`` cloud (and
  :func:`write_labeled_ply` to write labelled points back);
* :func:`read_scene` / :func:`write_scene` - one scene as a folder of ``.npy`` arrays (Pointcept's
  preprocessed layout, S3DIS and ScanNet); :func:`s3dis_scenes` and :func:`prepare_s3dis` - S3DIS (the raw
  release converted once), :class:`SceneCrops` - training crops of scenes (grid subsampling, augmentation);
* :func:`read_las` / :func:`iter_las_chunks` / :func:`write_las_labels` - LiDAR LAS/LAZ (laspy, optional);
* :func:`image_folder` - ImageNet-style ``<root>/<split>/<class>/<image>`` folders;
* :func:`ensure_demo_data` - generates the built-in demo data (points in the ModelNet40
  layout, images in the ImageNet layout) on first use.

Point transforms (``points [N, C] -> points``, torch RNG only) live in
:mod:`pointcoc.data.transforms`; ``data/README.md`` documents the layouts and sources.
"""

from pointcoc.data.demo import DEMO_IMAGE_CLASSES, DEMO_SHAPES, DemoConfig, ensure_demo_data, make_demo_clouds
from pointcoc.data.demo_parts import PART_DEMO_CATEGORIES, PartDemoConfig, ensure_partseg_demo
from pointcoc.data.demo_rooms import ROOM_DEMO_CLASSES, RoomDemoConfig, ensure_room_demo
from pointcoc.data.files import SUPPORTED_SUFFIXES, PointFile, label_colors, read_point_file, write_labeled_ply
from pointcoc.data.h5 import (
    SCANOBJECTNN_CLASSES,
    SCANOBJECTNN_VARIANTS,
    DatasetNotFoundError,
    PointCloudH5,
    load_time_benchmark,
    modelnet40,
    scanobjectnn,
)
from pointcoc.data.images import (
    BAD_IMAGE_POLICIES,
    DamagedImageError,
    ImageFolderDataset,
    collate_skipping,
    image_folder,
    load_image,
)
from pointcoc.data.las import ASPRS_CLASSES, LasLabelMap, iter_las_chunks, las_header_info, read_las, write_las_labels
from pointcoc.data.s3dis import S3DIS_CLASSES, prepare_s3dis, read_s3dis_room, s3dis_scenes
from pointcoc.data.scene_sets import SceneAugment, SceneCrops, voxelize
from pointcoc.data.scenes import Scene, read_scene, scene_folders, write_scene
from pointcoc.data.shapenetpart import SHAPENETPART_PARTS, PartCategories, ShapeNetPart, shapenetpart
from pointcoc.data.transforms import (
    Compose,
    Jitter,
    NormalizeUnitSphere,
    RandomDropout,
    Resample,
    RotateAxis,
    ScaleTranslate,
    Shuffle,
    default_train_transform,
    vote_scales,
)

__all__ = [
    "PointCloudH5", "modelnet40", "scanobjectnn", "image_folder", "ImageFolderDataset", "ensure_demo_data",
    "load_image", "collate_skipping", "DamagedImageError", "BAD_IMAGE_POLICIES",
    "DemoConfig", "make_demo_clouds", "DatasetNotFoundError", "load_time_benchmark", "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_VARIANTS",
    "DEMO_SHAPES", "DEMO_IMAGE_CLASSES", "ShapeNetPart", "shapenetpart", "PartCategories", "SHAPENETPART_PARTS",
    "Compose", "ScaleTranslate", "Jitter", "RotateAxis", "RandomDropout", "Shuffle", "NormalizeUnitSphere",
    "Resample", "default_train_transform", "vote_scales",
    "PartDemoConfig", "ensure_partseg_demo", "PART_DEMO_CATEGORIES",
    "read_point_file", "write_labeled_ply", "label_colors", "PointFile", "SUPPORTED_SUFFIXES",
    "RoomDemoConfig", "ensure_room_demo", "ROOM_DEMO_CLASSES",
    "Scene", "read_scene", "write_scene", "scene_folders", "SceneCrops", "SceneAugment", "voxelize",
    "S3DIS_CLASSES", "read_s3dis_room", "prepare_s3dis", "s3dis_scenes",
    "read_las", "iter_las_chunks", "write_las_labels", "las_header_info", "LasLabelMap", "ASPRS_CLASSES",
]
