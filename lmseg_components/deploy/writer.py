"""Write a predicted mask next to its input's name: PNG for 2D inputs, NIfTI for volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.data import MetaTensor
from monai.transforms import SaveImage

__all__ = ["mask_path", "write_mask"]


def _stem(name: str) -> str:
    for suffix in (".nii.gz", ".nii", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def mask_path(image: str | Path, output_dir: str | Path, spatial_dims: int) -> Path:
    """Where :func:`write_mask` writes the mask of ``image``: ``<output_dir>/<name>_mask.png`` (2D) or
    ``<output_dir>/<name>_seg.nii.gz`` (3D), the names the bundles' own inference writes."""
    suffix = "_mask.png" if spatial_dims == 2 else "_seg.nii.gz"
    return Path(output_dir) / f"{_stem(Path(image).name)}{suffix}"


def write_mask(pred: MetaTensor, output_dir: str | Path) -> Path:
    """Write ``pred`` (1, H, W) binary -> uint8 PNG 0/255, or (1, H, W, D) label volume -> uint8 NIfTI with the
    input's affine; the name comes from ``pred.meta["filename_or_obj"]`` (see :func:`mask_path`)."""
    if not isinstance(pred, MetaTensor) or "filename_or_obj" not in pred.meta:
        raise ValueError("pred must be a MetaTensor that carries its input's filename_or_obj")
    if pred.ndim not in (3, 4) or pred.shape[0] != 1:
        raise ValueError(f"pred must be (1, H, W) or (1, H, W, D), got {tuple(pred.shape)}")
    spatial_dims = pred.ndim - 1
    target = mask_path(pred.meta["filename_or_obj"], output_dir, spatial_dims)
    target.parent.mkdir(parents=True, exist_ok=True)
    saver = SaveImage(
        output_dir=str(target.parent),
        output_postfix="mask" if spatial_dims == 2 else "seg",
        output_ext=".png" if spatial_dims == 2 else ".nii.gz",
        output_dtype=np.uint8,
        scale=255 if spatial_dims == 2 else None,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    saver(pred)
    return target
