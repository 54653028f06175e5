"""``msd``: small CT-like volumes in Hounsfield units with three labelled organs (liver, spleen, kidney),
written as NIfTI with ``dataset.json`` in the Medical Segmentation Decathlon layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SYNTHETIC_ORGANS = {1: "liver", 2: "spleen", 3: "kidney"}

_ORGAN_HU = {1: 105.0, 2: 160.0, 3: 215.0}


def _organ_masks(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Label volume (x, y, z) with a liver, a spleen and two kidneys at jittered anatomical positions."""
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    labels = np.zeros(shape, dtype=np.uint8)

    def ellipsoid(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> np.ndarray:
        j = rng.uniform(-0.03, 0.03, size=3)
        s = rng.uniform(0.9, 1.1, size=3)
        return (
            ((x - (cx + j[0]) * nx) / (rx * s[0] * nx)) ** 2
            + ((y - (cy + j[1]) * ny) / (ry * s[1] * ny)) ** 2
            + ((z - (cz + j[2]) * nz) / (rz * s[2] * nz)) ** 2
        ) <= 1.0

    labels[ellipsoid(0.33, 0.45, 0.55, 0.17, 0.15, 0.3)] = 1
    labels[ellipsoid(0.72, 0.42, 0.55, 0.08, 0.1, 0.22)] = 2
    for cx in (0.35, 0.65):
        labels[ellipsoid(cx, 0.66, 0.4, 0.06, 0.07, 0.18)] = 3
    return labels


def make_synthetic_msd(
    out: str | Path,
    seed: int = 0,
    n_cases: int = 12,
    shape: Sequence[int] = (64, 64, 24),
    spacing: Sequence[float] = (1.5, 1.5, 3.0),
) -> dict:
    """Write a synthetic CT set in the MSD layout (``imagesTr``, ``labelsTr``, ``dataset.json``).

    Volumes are int16 Hounsfield units (air -1000, soft tissue ~40 HU, organs 105 / 160 / 215 HU with noise);
    labels are uint8 with {0: background, 1: liver, 2: spleen, 3: kidney}.

    Returns:
        summary with the case count and label map.
    """
    import nibabel as nib

    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes of at least 8 voxels, got {tuple(shape)}.")
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -0.5 * np.asarray(shape) * np.asarray(spacing)
    nx, ny, nz = shape
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    body = (((xx - nx / 2) / (0.45 * nx)) ** 2 + ((yy - ny / 2) / (0.4 * ny)) ** 2) <= 1.0
    training = []
    for index in range(n_cases):
        labels = _organ_masks(tuple(shape), rng)
        hu = np.full(shape, -1000.0, dtype=np.float32)
        hu[body] = 40.0
        for label, value in _ORGAN_HU.items():
            hu[labels == label] = value + rng.uniform(-10, 10)
        hu += rng.normal(0.0, 18.0, size=shape).astype(np.float32)
        name = f"synct_{index:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.round(hu).astype(np.int16), affine), str(out / "imagesTr" / name))
        nib.save(nib.Nifti1Image(labels, affine), str(out / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "SyntheticAbdomenCT",
        "description": "Synthetic CT-like volumes written by lmseg make-synthetic --kind msd",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", **{str(k): v for k, v in SYNTHETIC_ORGANS.items()}},
        "numTraining": n_cases,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=4) + "\n")
    return {"kind": "msd", "seed": seed, "n_cases": n_cases, "labels": meta["labels"]}
