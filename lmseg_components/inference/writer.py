"""Write a predicted mask next to its input's name: PNG for 2D inputs, NIfTI for volumes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import FolderLayout, MetaTensor
from monai.transforms import SaveImage

__all__ = ["check_mask_paths", "describe_mask", "mask_path", "prompt_caption", "write_mask"]

# spatial dims -> (postfix, extension, scale): the names and formats of the bundles' own inference
_FORMATS = {2: ("mask", ".png", 255), 3: ("seg", ".nii.gz", None)}


def mask_path(image: str | Path, output_dir: str | Path, spatial_dims: int) -> Path:
    """Where :func:`write_mask` writes the mask of ``image``: ``<output_dir>/<name>_mask.png`` (2D) or
    ``<output_dir>/<name>_seg.nii.gz`` (3D), named by MONAI's own folder layout."""
    postfix, ext, _ = _FORMATS[spatial_dims]
    layout = FolderLayout(str(output_dir), postfix=postfix, extension=ext, parent=False, makedirs=False)
    return Path(layout.filename(subject=str(image)))


def check_mask_paths(images: Sequence[str | Path], output_dir: str | Path, spatial_dims: int) -> list[Path]:
    """The mask paths of ``images`` (see :func:`mask_path`), checked before any is written: distinct images must
    get distinct masks (``x.nii`` and ``x.nii.gz`` in one folder would share ``x_seg.nii.gz``), and masks already
    in ``output_dir`` (a rerun) are logged as a warning.

    Raises:
        ValueError: two images map to one mask file (the message names them).
    """
    paths = [mask_path(image, output_dir, spatial_dims) for image in images]
    sources: dict[Path, list[str]] = {}
    for image, path in zip(images, paths, strict=True):
        sources.setdefault(path, []).append(str(image))
    clashes = [f"{path.name} <- {', '.join(names)}" for path, names in sources.items() if len(set(names)) > 1]
    if clashes:
        raise ValueError(f"images would share a mask file in {output_dir}: {'; '.join(clashes)}")
    existing = sum(path.exists() for path in sources)
    if existing:
        logging.getLogger(__name__).warning(
            "%d of the %d mask files already exist in %s: they will be replaced", existing, len(sources), output_dir
        )
    return paths


def write_mask(pred: MetaTensor, output_dir: str | Path) -> Path:
    """Write ``pred`` (1, H, W) binary -> uint8 PNG 0/255, or (1, H, W, D) label volume -> uint8 NIfTI with the
    input's affine; the name comes from ``pred.meta["filename_or_obj"]`` (see :func:`mask_path`)."""
    if not isinstance(pred, MetaTensor) or "filename_or_obj" not in pred.meta:
        raise ValueError("pred must be a MetaTensor that carries its input's filename_or_obj")
    if pred.ndim not in (3, 4) or pred.shape[0] != 1:
        raise ValueError(f"pred must be (1, H, W) or (1, H, W, D), got {tuple(pred.shape)}")
    postfix, ext, scale = _FORMATS[pred.ndim - 1]
    saver = SaveImage(
        output_dir=str(output_dir),
        output_postfix=postfix,
        output_ext=ext,
        output_dtype=np.uint8,
        scale=scale,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    saver(pred)
    return mask_path(pred.meta["filename_or_obj"], output_dir, pred.ndim - 1)


def describe_mask(pred: torch.Tensor) -> dict:
    """What a written mask holds: ``voxels`` (count per label > 0, labels as strings), ``foreground_fraction``
    (share of pixels / voxels with any label) and ``empty`` (no foreground: the prompt named nothing the model
    found). ``pred`` is (1, H, W) binary or (1, H, W, D) labels."""
    values = torch.as_tensor(pred).detach().cpu().round().int()
    counts = {str(int(v)): int((values == v).sum()) for v in values.unique() if v > 0}
    foreground = sum(counts.values())
    return {"voxels": counts, "foreground_fraction": foreground / max(values.numel(), 1), "empty": foreground == 0}


def prompt_caption(prompt: str | list[str]) -> str:
    """A prompt, or the prompts of a multi-class bundle joined with ``; ``: the caption of an overlay and the label
    of a DICOM SEG segment."""
    return prompt if isinstance(prompt, str) else "; ".join(prompt)
