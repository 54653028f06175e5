"""Readers for the J-RAS datasets: ACDC (cardiac cine MRI, 2D slices of 3D frames) and BUSI (breast ultrasound),
split by patient with :mod:`lmseg_components.data.splits`.

ACDC layout::

    <root>/patient001/patient001_frame01.nii.gz        # image (X, Y, Z)
    <root>/patient001/patient001_frame01_gt.nii.gz     # labels 0 background, 1 RV, 2 myocardium, 3 LV
    ...                                                # (the official `training/` or `testing/` folder)

BUSI layout::

    <root>/{benign,malignant,normal}/<name>.png
    <root>/{benign,malignant,normal}/<name>_mask.png, <name>_mask_1.png, ...   # several masks: their union
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmseg_components.data.lvit import check_image_mask_pair
from lmseg_components.data.msd import nifti_volume_problem
from lmseg_components.data.problems import DataProblem, DatasetValidationError
from lmseg_components.data.prompted import IMAGE_SUFFIXES, read_prompted_images
from lmseg_components.data.splits import PARTS, select_part, split_problems

__all__ = [
    "ACDC_LABELS",
    "ACDC_PARTS",
    "check_acdc",
    "check_busi",
    "read_acdc_frames",
    "read_acdc_slices",
    "read_images_to_segment",
    "read_acdc_split",
    "read_busi",
    "read_busi_split",
]

ACDC_LABELS = {0: "background", 1: "right ventricle", 2: "myocardium", 3: "left ventricle"}
ACDC_PARTS = PARTS
_FRAME = re.compile(r"^(patient\d+)_frame(\d+)\.nii(\.gz)?$")
_BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(_\d+)?\.png$")
_ANNOTATION = re.compile(r"(_gt|_4d)\.nii(\.gz)?$|_mask(_\d+)?\.png$", re.IGNORECASE)


def read_acdc_slices(root: str | Path, min_foreground: int = 0, with_labels: bool = True) -> list[dict]:
    """One record per 2D slice of every annotated ACDC frame under ``root``.

    Args:
        root: folder holding ``patientXXX`` folders.
        min_foreground: skip slices whose ground truth has fewer foreground pixels (0 keeps every slice).
        with_labels: ``False`` lists every frame's slices without ground truth (inference on new frames).

    Returns:
        dicts with ``image`` and ``label`` (frame and ``_gt`` paths; no ``label`` without labels), ``slice``
        (z index), ``case_id`` (patient), ``name`` (``patientXXX_frameYY_zNN``).

    Raises:
        DatasetValidationError: every problem found (frame without ``_gt``, unreadable, truncated or non-3-D NIfTI,
            shape mismatch, label values outside ``ACDC_LABELS``).
    """
    import nibabel as nib

    root = Path(root)
    problems: list[DataProblem] = []
    records: list[dict] = []
    frames = sorted(p for p in root.glob("patient*/patient*_frame*.nii*") if _FRAME.match(p.name))
    if not frames:
        raise DatasetValidationError([DataProblem(str(root), "no patientXXX/patientXXX_frameYY.nii.gz found")])
    for frame in frames:
        patient, number = _FRAME.match(frame.name).group(1, 2)
        try:
            image = nib.load(str(frame))
            problem = nifti_volume_problem(frame, image)
        except Exception as e:  # nibabel raises many types for corrupt files
            problem = f"unreadable NIfTI ({e})"
        if problem is not None:
            problems.append(DataProblem(str(frame), problem))
            continue
        if not with_labels:
            records += [_slice_record(frame, None, z, patient, number) for z in range(image.shape[2])]
            continue
        gt = frame.with_name(frame.name.replace(".nii", "_gt.nii", 1))
        if not gt.is_file():
            problems.append(DataProblem(str(frame), f"no ground truth {gt.name}"))
            continue
        try:
            labels = np.asarray(nib.load(str(gt)).dataobj)
        except Exception as e:  # nibabel raises many types for corrupt files
            problems.append(DataProblem(str(gt), f"unreadable NIfTI ({e})"))
            continue
        if tuple(labels.shape) != tuple(image.shape):
            problems.append(DataProblem(str(gt), f"label shape {labels.shape} differs from image shape {image.shape}"))
            continue
        extra = sorted(set(np.unique(labels).astype(int).tolist()) - set(ACDC_LABELS))
        if extra:
            problems.append(DataProblem(str(gt), f"label values {extra} are not ACDC classes 0-3"))
            continue
        for z in range(labels.shape[2]):
            if int((labels[..., z] > 0).sum()) >= min_foreground:
                records.append(_slice_record(frame, gt, z, patient, number))
    if problems:
        raise DatasetValidationError(problems)
    return records


def _slice_record(frame: Path, gt: Path | None, z: int, patient: str, number: str) -> dict:
    record = {
        "image": str(frame.resolve()),
        "slice": z,
        "case_id": patient,
        "name": f"{patient}_frame{number}_z{z:02d}",
    }
    if gt is not None:
        record["label"] = str(gt.resolve())
    return record


def read_busi(root: str | Path, classes: Sequence[str] = ("benign", "malignant", "normal")) -> list[dict]:
    """One record per BUSI image: ``image``, ``label`` (a list of one or more mask paths, to be united),
    ``class``, ``case_id`` and ``name``.

    Raises:
        DatasetValidationError: images without any mask, masks without an image.
    """
    records, problems = _read_busi(Path(root), classes)
    if problems:
        raise DatasetValidationError(problems)
    return records


def read_busi_split(
    root: str | Path,
    part: str,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    classes: Sequence[str] = ("benign", "malignant", "normal"),
) -> list[dict]:
    """The ``train``, ``val`` or ``test`` records of a BUSI folder (see :func:`read_busi`), split with
    :func:`~lmseg_components.data.splits.split_by_case` as :func:`read_acdc_split` splits ACDC.

    BUSI publishes no patient ids, so each image is its own case (``case_id`` ``<class>/<name>``): retrieval
    excludes only the query image itself.
    """
    return select_part(read_busi(root, classes), part, fractions, seed, root)


def check_busi(root: str | Path, classes: Sequence[str] = ("benign", "malignant", "normal")) -> list[DataProblem]:
    """Every problem of :func:`read_busi` plus, for each image, every problem of its pixels: unreadable files,
    masks of another size than the image, masks that are not binary (the LViT reader's checks)."""
    records, problems = _read_busi(Path(root), classes)
    for record in records:
        for mask in record["label"]:
            check_image_mask_pair(Path(record["image"]), Path(mask), row=None, strict_masks=True, problems=problems)
    return problems


def check_acdc(root: str | Path, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> list[DataProblem]:
    """Every problem J-RAS training would meet in an ACDC folder: those of :func:`read_acdc_slices` and, when the
    slices read, an empty train, val or test part of the patient split (``fractions``, ``seed``)."""
    try:
        records = read_acdc_slices(root)
    except DatasetValidationError as e:
        return e.problems
    return split_problems(records, root, fractions, seed)


def _read_busi(root: Path, classes: Sequence[str]) -> tuple[list[dict], list[DataProblem]]:
    problems: list[DataProblem] = []
    records: list[dict] = []
    for cls in classes:
        folder = root / cls
        if not folder.is_dir():
            problems.append(DataProblem(str(folder), "class folder is missing"))
            continue
        masks: dict[str, list[Path]] = {}
        images = []
        for path in sorted(folder.glob("*.png")):
            match = _BUSI_MASK.match(path.name)
            if match:
                masks.setdefault(match.group("stem"), []).append(path)
            else:
                images.append(path)
        for image in images:
            if image.stem not in masks:
                problems.append(DataProblem(str(image), "image has no <name>_mask.png"))
                continue
            records.append(
                {
                    "image": str(image.resolve()),
                    "label": [str(m.resolve()) for m in masks.pop(image.stem)],
                    "class": cls,
                    "case_id": f"{cls}/{image.stem}",
                    "name": f"{cls}_{image.stem}",
                }
            )
        for stem, orphans in masks.items():
            problems += [DataProblem(str(m), f"mask has no image {stem}.png") for m in orphans]
    return records, problems


def read_acdc_split(
    root: str | Path,
    part: str,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    min_foreground: int = 0,
) -> list[dict]:
    """The ``train``, ``val`` or ``test`` slice records of an ACDC folder, split by patient with
    :func:`~lmseg_components.data.splits.split_by_case` (same ``fractions`` and ``seed`` give the same split in
    every workflow)."""
    return select_part(read_acdc_slices(root, min_foreground), part, fractions, seed, root)


def read_acdc_frames(
    root: str | Path, part: str, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> list[dict]:
    """The frames of the ``train``, ``val`` or ``test`` patients of an ACDC folder (the split of
    :func:`read_acdc_split`), one record per frame in file order: ``image`` (the frame), ``label`` (its ``_gt``),
    ``case_id`` (patient) and ``name`` (``patientXXX_frameYY``), for inference on whole volumes."""
    frames: dict[str, dict] = {}
    for record in read_acdc_split(root, part, fractions, seed):
        name = record["name"].rsplit("_z", 1)[0]
        frames.setdefault(name, {k: record[k] for k in ("image", "label", "case_id")} | {"name": name})
    return list(frames.values())


def read_images_to_segment(images: str | Path | Sequence[str | Path]) -> list[dict]:
    """The records ``{"image": path}`` of the images to segment: files as given; in a folder (sorted by name),
    every image except the annotations the ACDC and BUSI layouts keep beside them (``*_gt.nii.gz`` ground truth,
    ``*_4d.nii.gz`` cine series, ``*_mask.png`` / ``*_mask_N.png`` masks), so a patient's folder can be given as
    it is.

    Raises:
        FileNotFoundError / ValueError: as :func:`~lmseg_components.data.read_prompted_images`, naming the path.
    """
    paths = [Path(images)] if isinstance(images, str | Path) else [Path(p) for p in images]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES) and not _ANNOTATION.search(p.name)
            )
            if not found:
                raise FileNotFoundError(f"input {path}: no image to segment (annotations such as *_gt.nii.gz skipped)")
            files += found
        else:
            files.append(path)
    return [{"image": r["image"]} for r in read_prompted_images(files)]
