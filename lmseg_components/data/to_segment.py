"""What a bundle's inference segments: the test part of its dataset, or the user's own images (``--images DIR``,
with ``--prompts FILE`` for the text bundles) instead. One function per layout: each bundle's ``inference.json``
names one as its ``datalist``; the dataset is not read when images are given (it need not exist)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lmseg_components.data.acdc import read_acdc_frames, read_busi_split, read_images_to_segment
from lmseg_components.data.lvit import check_images_readable, read_lvit_split
from lmseg_components.data.msd import read_msd_split
from lmseg_components.data.prompted import read_prompted_images

__all__ = ["read_acdc_to_segment", "read_busi_to_segment", "read_lvit_to_segment", "read_msd_to_segment"]

Images = str | Path | Sequence[str | Path] | None


def read_lvit_to_segment(
    dataset_dir: str | Path, images: Images = None, prompts: str | Path | None = None
) -> list[dict]:
    """The ``Test`` split of an LViT-layout dataset (its text rows as prompts), or ``images`` with ``prompts``
    (:func:`~lmseg_components.data.read_prompted_images`); every image checked readable first."""
    if images is None:
        return check_images_readable(read_lvit_split(dataset_dir, "Test", validate=False))
    return check_images_readable(read_prompted_images(images, prompts))


def read_msd_to_segment(
    dataset_dir: str | Path,
    fractions: Sequence[float],
    seed: int,
    images: Images = None,
    prompts: str | Path | None = None,
    default: list[str] | None = None,
) -> list[dict]:
    """The ``test`` cases of an MSD-style dataset's split (``fractions``, ``seed``), or ``images`` with ``prompts``
    (``default``: the prompts of an image that has none, e.g. every organ of the bundle)."""
    if images is None:
        return read_msd_split(dataset_dir, "test", fractions, seed)
    return read_prompted_images(images, prompts, default=default)


def read_acdc_to_segment(
    dataset_dir: str | Path, fractions: Sequence[float], seed: int, images: Images = None
) -> list[dict]:
    """The frames of the ``test`` patients of an ACDC folder's split, or ``images`` (frames or patients' folders,
    see :func:`~lmseg_components.data.read_images_to_segment`)."""
    if images is None:
        return read_acdc_frames(dataset_dir, "test", fractions, seed)
    return read_images_to_segment(images)


def read_busi_to_segment(
    dataset_dir: str | Path, fractions: Sequence[float], seed: int, images: Images = None
) -> list[dict]:
    """The ``test`` images of a BUSI folder's split, or ``images``."""
    if images is None:
        return read_busi_split(dataset_dir, "test", fractions, seed)
    return read_images_to_segment(images)
