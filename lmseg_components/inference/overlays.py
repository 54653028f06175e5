"""Overlays of a prediction on the image file it came from (what ``lmseg segment``, ``lmseg serve`` and
:class:`~lmseg_components.inference.Segmenter` show): the image as read from its file, the mask in colour, the
prompt as caption; for a volume its busiest axial slice, or one overlay per slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import FolderLayout
from monai.transforms import EnsureChannelFirst, LoadImage, ScaleIntensity

from lmseg_components.files import atomic_write
from lmseg_components.outputs.overlay import render_overlay

__all__ = ["READERS", "busiest_slice", "overlay_image", "slice_overlays", "write_overlay"]

READERS = ("PILReader", "PydicomReader", "NibabelReader")  # PNG / JPEG, DICOM, NIfTI: chosen by file suffix


def _picture(image: str | Path) -> np.ndarray:
    """``image`` as read from its file, intensities scaled to [0, 1], channels averaged: (W, H) or (X, Y, Z)."""
    array = EnsureChannelFirst()(LoadImage(reader=list(READERS), image_only=True)(str(image)))
    return ScaleIntensity()(array.float()).mean(0).numpy()


def _mask_on(image: str | Path, picture: np.ndarray, pred: torch.Tensor) -> np.ndarray:
    mask = torch.as_tensor(pred).detach().cpu().numpy()[0]
    if mask.shape != picture.shape:
        raise ValueError(f"{image}: prediction {mask.shape} is not on the image's grid {picture.shape}")
    return mask


def overlay_image(image: str | Path, pred: torch.Tensor, caption: str):
    """The overlay of ``pred`` on the input ``image`` as read from its file (intensities scaled to [0, 1], channels
    averaged) as an RGB PIL image: ``pred`` on the same grid ((1, W, H) as MONAI reads a 2D image, or (1, X, Y, Z):
    the axial slice with the most foreground) and ``caption`` below."""
    picture = _picture(image)
    mask = _mask_on(image, picture, pred)
    if mask.ndim == 3:
        z = busiest_slice(mask)
        picture, mask, caption = picture[..., z], mask[..., z], f"{caption} (slice {z})"
    return render_overlay(picture.T, mask.T, caption)


def slice_overlays(image: str | Path, pred: torch.Tensor, caption: str) -> list:
    """One overlay per axial slice of a volume ``image`` with ``pred`` (1, X, Y, Z) on its grid: RGB PIL images,
    captioned ``caption (slice z)``."""
    picture = _picture(image)
    mask = _mask_on(image, picture, pred)
    if mask.ndim != 3:
        raise ValueError(f"{image}: slice overlays need a volume, got a {mask.ndim}-D image")
    return [render_overlay(picture[..., z].T, mask[..., z].T, f"{caption} (slice {z})") for z in range(mask.shape[2])]


def busiest_slice(mask: np.ndarray) -> int:
    """The axial slice of ``mask`` (X, Y, Z) with the most foreground (the first one when all are empty)."""
    return int(np.argmax((np.asarray(mask) > 0).sum(axis=(0, 1))))


def write_overlay(image: str | Path, pred: torch.Tensor, caption: str, output_dir: str | Path) -> Path:
    """Write :func:`overlay_image` to ``<output_dir>/<name>_overlay.png``."""
    overlay = overlay_image(image, pred, caption)
    layout = FolderLayout(str(output_dir), postfix="overlay", extension=".png", parent=False, makedirs=True)
    path = Path(layout.filename(subject=str(image)))
    return atomic_write(path, lambda tmp: overlay.save(tmp, format="PNG"))
