"""Reader for Medical Segmentation Decathlon-style 3D NIfTI datasets (MSD-Spleen, AbdomenCT-1k, WORD).

Layout::

    <root>/dataset.json          # {"labels": {"0": "background", "1": "spleen", ...},
                                 #  "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]}
    <root>/imagesTr/*.nii.gz
    <root>/labelsTr/*.nii.gz

Reading checks headers only (existence, NIfTI header, 3-D volumes, image/label shape and affine agreement) plus
a cheap truncation check (the size the header needs against the file, or the gzip trailer); ``check_msd(deep=True)``
also decodes every voxel, catching any corrupt file and label values outside ``labels``. The ``labels`` keys must
be ``0..N-1`` without gaps: training one-hot encodes label ``k`` as channel ``k``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmseg_components.data.problems import DataProblem, DatasetValidationError
from lmseg_components.data.splits import select_part

__all__ = [
    "ORGAN_PROMPT",
    "organ_prompt",
    "nifti_volume_problem",
    "read_msd_labels",
    "read_msd",
    "read_msd_split",
    "check_msd",
]

ORGAN_PROMPT = "A computerized tomography of a {organ}"
AFFINE_ATOL = 1e-3


def organ_prompt(organ: str) -> str:
    """The per-organ text prompt, e.g. ``A computerized tomography of a spleen``."""
    return ORGAN_PROMPT.format(organ=organ.replace("_", " "))


def _load_dataset_json(root: Path) -> tuple[dict | None, list[DataProblem]]:
    path = root / "dataset.json"
    if not path.is_file():
        return None, [DataProblem(str(path), "dataset.json is missing")]
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return None, [DataProblem(str(path), f"cannot parse dataset.json: {e}")]
    problems = []
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append(DataProblem(str(path), "dataset.json has no 'labels' map"))
    elif not all(str(k).isdigit() for k in labels):
        problems.append(DataProblem(str(path), f"'labels' keys must be integers, got {list(labels)}"))
    elif sorted(int(k) for k in labels) != list(range(len(labels))):
        problems.append(
            DataProblem(
                str(path),
                f"'labels' keys must be 0..{len(labels) - 1} without gaps (label k is trained as class k), "
                f"got {sorted(int(k) for k in labels)}",
            )
        )
    return meta, problems


def read_msd_labels(root: str | Path) -> dict[int, str]:
    """The ``labels`` map of ``dataset.json`` as ``{index: name}``, background included."""
    meta, problems = _load_dataset_json(Path(root))
    if problems:
        raise DatasetValidationError(problems)
    return {int(k): str(v) for k, v in meta["labels"].items()}


def read_msd(root: str | Path, section: str = "training") -> list[dict]:
    """Read the ``section`` list of an MSD-style dataset into MONAI-style records.

    Returns:
        one dict per case: ``image``, ``label`` (absolute paths), ``text`` (one organ prompt per foreground
        label, in label order), ``name`` (image file name), ``case_id`` (name without ``.nii.gz``).

    Raises:
        DatasetValidationError: listing every problem found (missing files, unreadable headers,
            image/label shape or affine mismatch), each naming its file.
    """
    records, problems = _read(Path(root), section, deep=False)
    if problems:
        raise DatasetValidationError(problems)
    return records


def read_msd_split(
    root: str | Path, part: str, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> list[dict]:
    """The ``train``, ``val`` or ``test`` cases of the ``training`` section (MSD test cases have no labels), split
    with :func:`~lmseg_components.data.splits.split_by_case`; same ``fractions`` and ``seed``, same split."""
    return select_part(read_msd(root), part, fractions, seed, root)


def check_msd(root: str | Path, section: str = "training", deep: bool = True) -> list[DataProblem]:
    """Every problem found in an MSD-style dataset; ``deep`` decodes all voxels too."""
    return _read(Path(root), section, deep)[1]


def _case_id(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def nifti_volume_problem(path: str | Path, volume) -> str | None:
    """Why the loaded NIfTI ``volume`` read from ``path`` cannot be trained on, or None: it is not 3-D, or the file
    is shorter than its header says. The size check reads the file size (``.nii``) or the gzip trailer's
    uncompressed size (``.nii.gz``); only when the trailer disagrees (a truncated file, or a gzip of several
    members) are the voxels decoded to decide. Used by the MSD and ACDC readers."""
    path = Path(path)
    if len(volume.shape) != 3:
        return f"{len(volume.shape)}-D volume {volume.shape}, expected a 3-D volume"
    header = volume.header
    needed = int(header.get_data_offset()) + int(np.prod(volume.shape)) * header.get_data_dtype().itemsize
    if not path.name.endswith(".gz"):
        size = path.stat().st_size
        return None if size >= needed else f"truncated NIfTI: {size} bytes, its header needs {needed}"
    with open(path, "rb") as f:
        f.seek(-4, 2)
        if int.from_bytes(f.read(4), "little") == needed % 2**32:
            return None
    try:
        np.asarray(volume.dataobj)
    except Exception as e:  # zlib, gzip and nibabel errors for torn streams
        return f"truncated or corrupt NIfTI ({e})"
    return None


def _read(root: Path, section: str, deep: bool) -> tuple[list[dict], list[DataProblem]]:
    import nibabel as nib

    meta, problems = _load_dataset_json(root)
    if meta is None or problems:
        return [], problems
    labels = {int(k): str(v) for k, v in meta["labels"].items()}
    prompts = [organ_prompt(name) for k, name in sorted(labels.items()) if k != 0]
    entries = meta.get(section)
    json_path = str(root / "dataset.json")
    if not isinstance(entries, list):
        return [], [DataProblem(json_path, f"dataset.json has no '{section}' list")]
    records = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            problems.append(DataProblem(json_path, f"{section}[{index}] needs 'image' and 'label' keys"))
            continue
        image, label = (root / entry["image"]).resolve(), (root / entry["label"]).resolve()
        headers = {}
        for path in (image, label):
            if not path.is_file():
                problems.append(DataProblem(str(path), f"file listed in {section}[{index}] is missing"))
                continue
            try:
                vol = nib.load(str(path))
                problem = nifti_volume_problem(path, vol)
                if problem is not None:
                    problems.append(DataProblem(str(path), problem))
                    continue
                if deep:
                    data = np.asarray(vol.dataobj)
                    if path == label:
                        extra = sorted(set(np.unique(data).astype(int).tolist()) - set(labels))
                        if extra:
                            problems.append(DataProblem(str(path), f"label values {extra} not in 'labels' map"))
                headers[path] = (vol.shape, vol.affine)
            except Exception as e:  # nibabel raises many types for corrupt files
                problems.append(DataProblem(str(path), f"unreadable or corrupt NIfTI ({e})"))
        if len(headers) == 2:
            (shape_i, aff_i), (shape_l, aff_l) = headers[image], headers[label]
            if shape_i != shape_l:
                problems.append(DataProblem(str(label), f"label shape {shape_l} differs from image shape {shape_i}"))
            elif not np.allclose(aff_i, aff_l, atol=AFFINE_ATOL):
                problems.append(DataProblem(str(label), f"label affine differs from image {image.name} affine"))
        records.append(
            {
                "image": str(image),
                "label": str(label),
                "text": prompts,
                "name": image.name,
                "case_id": _case_id(image.name),
            }
        )
    return records, problems
