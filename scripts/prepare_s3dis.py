#!/usr/bin/env python
"""Convert the raw S3DIS release once into scene folders (Pointcept's preprocessed layout).

Reads RAW/Area_<k>/<room>/Annotations/*.txt (RAW: the Stanford3dDataset_v1.2_Aligned_Version folder or a
folder holding it) and writes OUT/Area_<k>/<room>/{coord,color,segment}.npy. Rooms already written are
skipped, so an interrupted run resumes where it stopped (--overwrite rewrites them). A room that cannot be read
is reported and skipped; the script then exits with code 1 naming it. Bad input (no release at RAW, an unknown
area) exits with code 2 and a one-line error.

Examples:
    python scripts/prepare_s3dis.py --raw-dir data/Stanford3dDataset_v1.2_Aligned_Version --out-dir data/s3dis
    python scripts/prepare_s3dis.py --raw-dir data --out-dir data/s3dis --areas 5 --bad-lines skip
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pointcoc.data.s3dis import BAD_LINE_POLICIES, prepare_s3dis
from pointcoc.engine.cli import exit_on_input_error, setup_logging

log = logging.getLogger("pointcoc.prepare_s3dis")


def area_list(text: str) -> list[int]:
    """``"1,2,6"`` -> ``[1, 2, 6]`` (the library checks the values)."""
    try:
        return [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected area numbers separated by commas, e.g. 1,2,6; got {text!r}"
                                         ) from None


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", required=True, help="the raw release folder, or a folder holding it")
    parser.add_argument("--out-dir", required=True, help="where the scene folders go (e.g. data/s3dis)")
    parser.add_argument("--areas", type=area_list, help="areas to convert, e.g. 1,2,3 (default: every area found)")
    parser.add_argument("--bad-lines", choices=BAD_LINE_POLICIES, default="error",
                        help="a line that is not 'x y z r g b': fail its room (error, default) or drop it (skip)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite rooms already written")
    args = parser.parse_args(argv)
    setup_logging()
    with exit_on_input_error(log):
        summary = prepare_s3dis(args.raw_dir, args.out_dir, areas=args.areas, bad_lines=args.bad_lines,
                                overwrite=args.overwrite)
    if summary["failed"]:
        for name, message in summary["failed"].items():
            log.error("failed: %s: %s", name, message)
        hint = "" if args.bad_lines == "skip" else "; or pass --bad-lines skip to drop lines that are not 'x y z r g b'"
        log.error("%d room(s) not converted: fix them and rerun (rooms already written are skipped)%s",
                  len(summary["failed"]), hint)
        sys.exit(1)
    log.info("done: %s holds the scene folders; list a split with pointcoc.data.s3dis.s3dis_scenes(%r, 'train')",
             summary["out_root"], summary["out_root"])
    return summary


if __name__ == "__main__":
    main()
