"""Synthetic datasets written in the real layouts, so every workflow runs and is tested without real data.

``lvit``: grey chest-like radiographs with lesion blobs in named lung zones (upper / middle / lower x left /
right lung). Some blobs are *mentioned* by the description and drawn in the mask; others are *distractors*,
identical in appearance, that the text does not mention and the mask does not contain. Only a model that reads
the text can tell them apart: an oracle that segments every blob while ignoring the text scores the Dice
reported as ``text_ignoring_oracle_mdice`` (about 0.55 by construction, see :func:`_count_distractors`).

Left and right follow the radiological convention: the patient's left lung is on the image's right side
(columns ``x >= width / 2``), as in QaTa-COV19 and MosMedData+ reports.

``msd``: small CT-like volumes in Hounsfield units with three labelled organs (liver, spleen, kidney),
written as NIfTI with ``dataset.json`` in the Medical Segmentation Decathlon layout.

``acdc``: short-axis cardiac MRI stacks in the ACDC layout (RV, myocardium, LV), for retrieval-augmented
segmentation.

The same seed and options give identical files and records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "LUNG_LEVELS",
    "LUNG_SIDES",
    "LungZone",
    "describe_zones",
    "make_synthetic_lvit",
    "make_synthetic_msd",
    "make_synthetic_acdc",
    "SYNTHETIC_ORGANS",
]

LUNG_LEVELS = ("upper", "middle", "lower")
LUNG_SIDES = ("left", "right")
SYNTHETIC_ORGANS = {1: "liver", 2: "spleen", 3: "kidney"}
ACDC_CLASS_NAMES = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
_ORGAN_HU = {1: 105.0, 2: 160.0, 3: 215.0}
_COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
_LEVEL_WORDS = {"upper": ("upper",), "middle": ("middle", "mid"), "lower": ("lower",)}


@dataclass(frozen=True)
class LungZone:
    """One of the six named lung zones; ``side`` is the patient's side (radiological convention)."""

    level: str
    side: str

    def image_center(self, size: int) -> tuple[float, float]:
        """(row, column) of the zone centre in an image of ``size`` pixels; patient's left is image right."""
        col = size * (0.5 + 0.2 if self.side == "left" else 0.5 - 0.2)
        row = size * (0.5 + (LUNG_LEVELS.index(self.level) - 1) * 0.2)
        return row, col


ALL_ZONES = tuple(LungZone(level, side) for side in LUNG_SIDES for level in LUNG_LEVELS)


def _zone_phrase(zone: LungZone, rng: np.random.Generator) -> str:
    level = _LEVEL_WORDS[zone.level][rng.integers(len(_LEVEL_WORDS[zone.level]))]
    forms = (
        f"{level} {zone.side} lung",
        f"{zone.side} {level} lung",
        f"{level} zone of the {zone.side} lung",
    )
    return forms[rng.integers(len(forms))]


def describe_zones(zones: Sequence[LungZone], rng: np.random.Generator) -> str:
    """A clinical-style description mentioning every zone in ``zones`` (1 to 3 zones), phrasing drawn from rng."""
    if not 1 <= len(zones) <= 3:
        raise ValueError(f"describe_zones takes 1 to 3 zones, got {len(zones)}.")
    n = len(zones)
    places = " and ".join(_zone_phrase(z, rng) for z in zones)
    lateral = "Bilateral" if len({z.side for z in zones}) > 1 else "Unilateral"
    plural = "s" if n > 1 else ""
    templates = (
        f"{lateral} pulmonary infection, {_COUNT_WORDS[n]} infected area{plural}, {places}.",
        f"{_COUNT_WORDS[n].capitalize()} infected area{plural} in the {places}.",
        f"{lateral} lung involvement with {_COUNT_WORDS[n]} lesion{plural}: {places}.",
        f"Ground-glass opacity in the {places}.",
        f"Findings consistent with infection of the {places}.",
    )
    return templates[rng.integers(len(templates))]


def _count_distractors(n_targets: int, rng: np.random.Generator) -> int:
    """Distractors per image: n_targets + {0, 1, 2}, so a text-ignoring oracle's Dice 2t / (2t + d) <= 2/3."""
    return min(n_targets + int(rng.integers(0, 3)), len(ALL_ZONES) - n_targets)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders."""
    radius = max(1, int(round(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(img, radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 0, padded, kernel, mode="valid")
    return np.apply_along_axis(np.convolve, 1, rows, kernel, mode="valid").astype(np.float32)


def _smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.BICUBIC))


def _ellipse(size: int, row: float, col: float, r_row: float, r_col: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((yy - row) / r_row) ** 2 + ((xx - col) / r_col) ** 2 <= 1.0


def _blob(size: int, zone: LungZone, rng: np.random.Generator) -> np.ndarray:
    """An irregular lesion: 2-3 ellipses jittered around the zone centre; it stays within 0.1 * size of it."""
    row, col = zone.image_center(size)
    row += rng.uniform(-0.03, 0.03) * size
    col += rng.uniform(-0.03, 0.03) * size
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(2, 4))):
        mask |= _ellipse(
            size,
            row + rng.uniform(-0.02, 0.02) * size,
            col + rng.uniform(-0.02, 0.02) * size,
            rng.uniform(0.03, 0.05) * size,
            rng.uniform(0.03, 0.05) * size,
        )
    return mask


def _chest(size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey chest-like radiograph in [0, 1]: bright body, dark lungs, bright mediastinum, smooth texture."""
    img = np.full((size, size), 0.08, dtype=np.float32)
    img[_ellipse(size, size * 0.52, size * 0.5, size * 0.47, size * 0.44)] = 0.62
    for side in LUNG_SIDES:
        col = LungZone("middle", side).image_center(size)[1]
        img[_ellipse(size, size * 0.5, col, size * 0.34, size * 0.16)] = 0.22
    img[_ellipse(size, size * 0.55, size * 0.5, size * 0.3, size * 0.06)] = 0.7
    img = _blur(img, size / 64)
    img = img + 0.05 * _smooth_noise((size, size), 8, rng) + 0.015 * rng.standard_normal((size, size))
    return img.astype(np.float32)


def _render_lesions(img: np.ndarray, blobs: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    for blob in blobs:
        img = img + rng.uniform(0.28, 0.38) * _blur(blob.astype(np.float32), size / 128)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    return np.clip((img - 0.4) * contrast + 0.4 + brightness, 0.0, 1.0)


def _mdice(pred: np.ndarray, gt: np.ndarray) -> float:
    denom = pred.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, gt).sum() / denom)


def _write_table(path: Path, rows: list[tuple[str, str]]) -> None:
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["Image", "Description"])
            writer.writerows(rows)
        return
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Image", "Description"])
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)


def make_synthetic_lvit(
    out: str | Path,
    seed: int = 0,
    size: int = 128,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    naming: str = "qata",
    text_format: str = "xlsx",
) -> dict:
    """Write a synthetic text-grounded dataset in the LViT layout.

    Args:
        out: dataset root; ``Train_Folder``, ``Val_Folder`` and ``Test_Folder`` are written below it.
        seed: random seed; the same seed and options give identical files.
        size: image side in pixels.
        n_train, n_val, n_test: images per split.
        naming: ``qata`` (masks named ``mask_<image>``, the table lists the mask name) or ``mosmed``
            (same name for image and mask).
        text_format: ``xlsx`` (``<split>_text.xlsx``) or ``csv`` (``<split>_text.csv``).

    Returns:
        summary with the image counts, ``text_ignoring_oracle_mdice`` (the per-image Dice of segmenting every
        blob, mentioned or not, which bounds what a model that ignores the text can reach) and ``images``: the
        ``mentioned`` and ``distractors`` zones of each image. It is also written to ``<out>/synthetic.json``.
    """
    if naming not in ("qata", "mosmed"):
        raise ValueError(f"naming must be 'qata' or 'mosmed', got {naming!r}.")
    if text_format not in ("xlsx", "csv"):
        raise ValueError(f"text_format must be 'xlsx' or 'csv', got {text_format!r}.")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}.")
    rng = np.random.default_rng(seed)
    out = Path(out)
    oracle = []
    counts = {}
    layout = {}
    for split, count in (("Train", n_train), ("Val", n_val), ("Test", n_test)):
        folder = out / f"{split}_Folder"
        (folder / "img").mkdir(parents=True, exist_ok=True)
        (folder / "labelcol").mkdir(parents=True, exist_ok=True)
        rows = []
        for index in range(count):
            n_targets = int(rng.integers(1, 3))
            chosen = rng.permutation(len(ALL_ZONES))[: n_targets + _count_distractors(n_targets, rng)]
            zones = [ALL_ZONES[i] for i in chosen]
            targets = sorted(zones[:n_targets], key=ALL_ZONES.index)
            blobs = [_blob(size, z, rng) for z in zones]
            mask = np.any(blobs[:n_targets], axis=0)
            image = _render_lesions(_chest(size, rng), blobs, rng)
            oracle.append(_mdice(np.any(blobs, axis=0), mask))
            name = f"syn_{split.lower()}_{index:04d}.png"
            mask_name = f"mask_{name}" if naming == "qata" else name
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / "img" / name)
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "labelcol" / mask_name)
            rows.append((mask_name, describe_zones(targets, rng)))
            layout[name] = {
                "mentioned": [f"{z.level} {z.side}" for z in targets],
                "distractors": sorted(f"{z.level} {z.side}" for z in zones[n_targets:]),
            }
        _write_table(folder / f"{split}_text.{text_format}", rows)
        counts[split] = count
    summary = {
        "kind": "lvit",
        "seed": seed,
        "size": size,
        "counts": counts,
        "naming": naming,
        "text_ignoring_oracle_mdice": float(np.mean(oracle)) if oracle else float("nan"),
        "images": layout,
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=4) + "\n")
    return summary


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


def make_synthetic_acdc(
    out: str | Path,
    seed: int = 0,
    n_patients: int = 10,
    shape: Sequence[int] = (64, 64, 8),
    frames: Sequence[int] = (1, 12),
    noise: float = 90.0,
) -> dict:
    """Write a synthetic cardiac MRI set in the ACDC layout (``patientXXX/patientXXX_frameYY[_gt].nii.gz``).

    Each frame is a short-axis stack: left-ventricle blood pool (label 3), myocardium ring (2) and a right
    ventricle crescent (1) that shrink from base to apex, with per-patient position, size, LV eccentricity and
    RV angle; frame 12 (end-systole) is smaller than frame 1 (end-diastole). To keep the task from being
    solvable by intensity alone, as in real cine MRI: the myocardium is only slightly darker than the
    surrounding tissue, both blood pools are equally bright, an unlabelled bright aorta and a dark lung sit next
    to the heart in basal slices, and a smooth bias field, textured tissue and Rician-like noise (``noise``)
    cover everything. Intensities are MRI-like (0-1000, int16).

    Returns:
        summary with the patient count, frames and label map.
    """
    import nibabel as nib

    if len(shape) != 3 or min(shape[:2]) < 24 or shape[2] < 2:
        raise ValueError(f"shape must be (X >= 24, Y >= 24, Z >= 2), got {tuple(shape)}.")
    rng = np.random.default_rng(seed)
    out = Path(out)
    nx, ny, nz = shape
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    for p in range(1, n_patients + 1):
        patient = f"patient{p:03d}"
        (out / patient).mkdir(parents=True, exist_ok=True)
        cx, cy = nx * rng.uniform(0.4, 0.6), ny * rng.uniform(0.4, 0.6)
        radius = min(nx, ny) * rng.uniform(0.1, 0.15)
        squash, tilt = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
        rv_angle = np.pi + rng.uniform(-0.6, 0.6)
        brightness = rng.uniform(0.85, 1.15)
        bias = _blur(rng.standard_normal((nx, ny)), sigma=min(nx, ny) / 4)
        bias = 1.0 + 0.25 * bias / max(1e-6, float(np.abs(bias).max()))
        for frame in frames:
            contraction = 1.0 if frame == frames[0] else rng.uniform(0.7, 0.8)
            labels = np.zeros(shape, np.uint8)
            intensity = np.empty(shape, np.float32)
            for z in range(nz):
                taper = 1.0 - 0.6 * z / max(1, nz - 1)  # base (z = 0) to apex
                r_lv = radius * taper * contraction
                u = (xx - cx) * np.cos(tilt) + (yy - cy) * np.sin(tilt)
                v = ((yy - cy) * np.cos(tilt) - (xx - cx) * np.sin(tilt)) / squash
                d = np.hypot(u, v)
                rx, ry = cx + 1.6 * r_lv * np.cos(rv_angle), cy + 1.6 * r_lv * np.sin(rv_angle)
                a = (xx - rx) * np.cos(rv_angle) + (yy - ry) * np.sin(rv_angle)
                b = (yy - ry) * np.cos(rv_angle) - (xx - rx) * np.sin(rv_angle)
                rv = (np.hypot(a, 0.7 * b) < 1.4 * r_lv) & (np.hypot(xx - cx, yy - cy) > r_lv + 0.35 * radius)
                slice_labels = labels[..., z]
                if z < nz - 1:
                    slice_labels[rv] = 1
                slice_labels[d < r_lv + 0.3 * radius] = 2
                slice_labels[d < r_lv] = 3
                tissue = 300.0 + 40.0 * _blur(rng.standard_normal((nx, ny)), 1.5)
                image = np.where(slice_labels == 2, 230.0, tissue)
                image[(slice_labels == 1) | (slice_labels == 3)] = 720.0
                if z < nz // 2:  # basal slices: aorta (bright, unlabelled) and lung (dark)
                    ax, ay = cx - 1.8 * radius * np.cos(rv_angle), cy - 2.2 * radius
                    aorta = np.hypot(xx - ax, yy - ay) < 0.45 * radius
                    image[aorta & (slice_labels == 0)] = 700.0
                    lung = (xx - cx) * np.cos(rv_angle) + (yy - cy) * np.sin(rv_angle) < -3.2 * radius
                    image[lung & (slice_labels == 0)] = 60.0
                image = _blur(image, 0.7) * bias * brightness
                intensity[..., z] = np.hypot(
                    image + noise * rng.standard_normal((nx, ny)), noise * rng.standard_normal((nx, ny))
                )
            stem = f"{patient}_frame{frame:02d}"
            nib.save(
                nib.Nifti1Image(np.clip(intensity, 0, 1000).astype(np.int16), affine),
                str(out / patient / f"{stem}.nii.gz"),
            )
            nib.save(nib.Nifti1Image(labels, affine), str(out / patient / f"{stem}_gt.nii.gz"))
    return {"kind": "acdc", "seed": seed, "n_patients": n_patients, "frames": list(frames), "labels": ACDC_CLASS_NAMES}
