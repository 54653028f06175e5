"""Synthetic datasets written in the real layouts, so every workflow runs and is tested without real data.

``lvit``: grey chest-like radiographs with lesion blobs in named lung zones (upper / middle / lower x left /
right lung). Some blobs are *mentioned* by the description and drawn in the mask; others are *distractors*,
identical in appearance, that the text does not mention and the mask does not contain. Only a model that reads
the text can tell them apart: an oracle that segments every blob while ignoring the text scores the Dice
reported as ``text_ignoring_oracle_mdice`` (about 0.55 by construction, see :func:`_count_distractors`).
``labelcol_all/`` holds every blob of each image (the target of an empty prompt, see
:class:`~lmseg_components.data.TextDropoutd`); real LViT masks already hold every finding. The test split ends
with prompts that *name nothing* (``nothing_fraction`` of ``n_test`` extra images, ``syn_test_none_*``): a zone
without a lesion, or an unrelated sentence; their mask is empty. :func:`paraphrase_zones` re-phrases a
description with words and templates the generator never uses, for robustness tests.

Left and right follow the radiological convention: the patient's left lung is on the image's right side
(columns ``x >= width / 2``), as in QaTa-COV19 and MosMedData+ reports.

``msd``: small CT-like volumes in Hounsfield units with three labelled organs (liver, spleen, kidney),
written as NIfTI with ``dataset.json`` in the Medical Segmentation Decathlon layout.

``acdc``: short-axis cardiac MRI stacks in the ACDC layout (RV, myocardium, LV), for retrieval-augmented
segmentation, on two simulated scanners and at two difficulties.

``busi``: breast ultrasound images in the BUSI layout (``benign``, ``malignant``, ``normal`` folders with
``<name>.png`` and ``<name>_mask.png``): speckled tissue layers with a hypoechoic lesion, smooth for benign,
irregular for malignant, none for normal.

The same seed and options give identical files and records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lmseg_components.data.lvit import ALL_FINDINGS_FOLDER

__all__ = [
    "LUNG_LEVELS",
    "LUNG_SIDES",
    "LungZone",
    "describe_zones",
    "paraphrase_zones",
    "UNRELATED_PROMPTS",
    "make_synthetic_lvit",
    "make_synthetic_msd",
    "make_synthetic_acdc",
    "make_synthetic_busi",
    "BUSI_CLASSES",
    "CARDIAC_DIFFICULTIES",
    "CARDIAC_SCANNERS",
    "CardiacDifficulty",
    "CardiacScanner",
    "SYNTHETIC_MAKERS",
    "SYNTHETIC_ORGANS",
]

LUNG_LEVELS = ("upper", "middle", "lower")
LUNG_SIDES = ("left", "right")
SYNTHETIC_ORGANS = {1: "liver", 2: "spleen", 3: "kidney"}
BUSI_CLASSES = ("benign", "malignant", "normal")
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


# Never used by describe_zones: other level words, other templates, side before level, "-sided".
_PARAPHRASE_LEVELS = {"upper": ("superior", "apical"), "middle": ("central",), "lower": ("inferior", "basal")}
UNRELATED_PROMPTS = (
    "Healed fracture of the right clavicle.",
    "Cardiac silhouette within normal limits.",
    "Nasogastric tube tip below the diaphragm.",
    "Degenerative changes of the thoracic spine.",
    "The patient was imaged supine.",
)


def paraphrase_zones(zones: Sequence[LungZone], rng: np.random.Generator) -> str:
    """A description of ``zones`` (1 to 3) in phrasings :func:`describe_zones` never produces: other words for
    the level (superior, basal, ...), the side first or hyphenated (``left-sided``), other sentence templates."""
    if not 1 <= len(zones) <= 3:
        raise ValueError(f"paraphrase_zones takes 1 to 3 zones, got {len(zones)}.")
    places = []
    for zone in zones:
        level = _PARAPHRASE_LEVELS[zone.level][rng.integers(len(_PARAPHRASE_LEVELS[zone.level]))]
        forms = (
            f"{zone.side} lung, {level} region",
            f"{level} {zone.side}-sided field",
            f"{level} part of the {zone.side} lung",
        )
        places.append(forms[rng.integers(len(forms))])
    joined = ", as well as the ".join(places)
    templates = (
        f"Patchy consolidation seen in the {joined}.",
        f"Opacification involving the {joined}.",
        f"Infiltrates are present: the {joined}.",
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


def _write_lvit_item(
    folder: Path, name: str, naming: str, image: np.ndarray, mask: np.ndarray, blobs: list, text: str
) -> tuple[str, str]:
    """Write image, mask and every-blob mask of one item into a split folder; return its text-table row."""
    mask_name = f"mask_{name}" if naming == "qata" else name
    Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / "img" / name)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "labelcol" / mask_name)
    every_blob = np.any(blobs, axis=0) if blobs else np.zeros_like(mask)
    Image.fromarray(every_blob.astype(np.uint8) * 255).save(folder / ALL_FINDINGS_FOLDER / mask_name)
    return mask_name, text


def make_synthetic_lvit(
    out: str | Path,
    seed: int = 0,
    size: int = 128,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    naming: str = "qata",
    text_format: str = "xlsx",
    nothing_fraction: float = 0.1,
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
        nothing_fraction: the test split gets ``round(nothing_fraction * n_test)`` more images whose prompt names
            nothing (half a zone without a lesion, half an unrelated sentence) and whose mask is empty. They are
            drawn from their own random stream, after the others: the other images do not change with it.

    Returns:
        summary with the image counts, ``text_ignoring_oracle_mdice`` (the per-image Dice of segmenting every
        blob, mentioned or not, which bounds what a model that ignores the text can reach), ``names_nothing``
        (the test images whose prompt names nothing) and ``images``: the ``mentioned`` and ``distractors``
        zones of each image. It is also written to ``<out>/synthetic.json``.
    """
    if naming not in ("qata", "mosmed"):
        raise ValueError(f"naming must be 'qata' or 'mosmed', got {naming!r}.")
    if text_format not in ("xlsx", "csv"):
        raise ValueError(f"text_format must be 'xlsx' or 'csv', got {text_format!r}.")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}.")
    if not 0.0 <= nothing_fraction <= 1.0:
        raise ValueError(f"nothing_fraction must be in [0, 1], got {nothing_fraction}.")
    rng = np.random.default_rng(seed)
    out = Path(out)
    oracle = []
    counts = {}
    layout = {}
    names_nothing = []
    for split, count in (("Train", n_train), ("Val", n_val), ("Test", n_test)):
        folder = out / f"{split}_Folder"
        for sub in ("img", "labelcol", ALL_FINDINGS_FOLDER):
            (folder / sub).mkdir(parents=True, exist_ok=True)
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
            rows.append(_write_lvit_item(folder, name, naming, image, mask, blobs, describe_zones(targets, rng)))
            layout[name] = {
                "mentioned": [f"{z.level} {z.side}" for z in targets],
                "distractors": sorted(f"{z.level} {z.side}" for z in zones[n_targets:]),
            }
        if split == "Test":
            nothing_rng = np.random.default_rng([seed, 1])
            for index in range(round(nothing_fraction * count)):
                chosen = nothing_rng.permutation(len(ALL_ZONES))[: int(nothing_rng.integers(1, 4)) + 1]
                zones = [ALL_ZONES[i] for i in chosen]
                blobs = [_blob(size, z, nothing_rng) for z in zones[1:]]
                image = _render_lesions(_chest(size, nothing_rng), blobs, nothing_rng)
                if index % 2 == 0:  # a zone without a lesion
                    text, named = describe_zones(zones[:1], nothing_rng), f"{zones[0].level} {zones[0].side}"
                else:
                    text, named = UNRELATED_PROMPTS[nothing_rng.integers(len(UNRELATED_PROMPTS))], "unrelated"
                name = f"syn_test_none_{index:04d}.png"
                empty = np.zeros((size, size), dtype=bool)
                rows.append(_write_lvit_item(folder, name, naming, image, empty, blobs, text))
                layout[name] = {
                    "mentioned": [],
                    "names": named,
                    "distractors": sorted(f"{z.level} {z.side}" for z in zones[1:]),
                }
                names_nothing.append(name)
        _write_table(folder / f"{split}_text.{text_format}", rows)
        counts[split] = len(rows)
    summary = {
        "kind": "lvit",
        "seed": seed,
        "size": size,
        "counts": counts,
        "naming": naming,
        "text_ignoring_oracle_mdice": float(np.mean(oracle)) if oracle else float("nan"),
        "names_nothing": names_nothing,
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


@dataclass(frozen=True)
class CardiacScanner:
    """How a synthetic cardiac frame is acquired: a miniature of the multi-vendor shift of M&Ms.

    Attributes:
        spacing: in-plane pixel spacing in mm. The field of view is that of ``shape`` at 1.5 mm, so another
            spacing gives another image size over the same anatomy (in millimetres).
        gamma: contrast curve ``1000 * (s / 1000) ** gamma`` on the tissue signal ``s`` (0-1000); below 1 it
            brightens tissue and compresses the blood / myocardium contrast.
        max_intensity: the stored range is 0 to ``max_intensity`` (vendors store different ranges).
        bias: strength of the smooth multiplicative bias field (its peak deviation from 1).
        noise: Rician noise standard deviation in signal units (0-1000).
    """

    spacing: float = 1.5
    gamma: float = 1.0
    max_intensity: float = 1000.0
    bias: float = 0.25
    noise: float = 90.0


@dataclass(frozen=True)
class CardiacDifficulty:
    """What makes the synthetic cardiac set hard to segment.

    Attributes:
        myocardium: myocardium signal; the surrounding tissue is 300 and blood 720, so closer to 300 is less
            contrast with the tissue around the heart.
        blur: partial-volume blur of the tissue signal (Gaussian sigma in 1.5 mm pixels).
        bias_gain, noise_gain: multiply the scanner's bias-field strength and noise.
        papillary: two papillary muscles with the myocardium's signal inside the LV cavity, labelled LV cavity
            (as ACDC's annotation protocol does), in every slice but the apical ones.
        rv_irregularity: amplitude of random low-frequency bumps on the RV outline (relative radius).
        apex_gap: up to this many apical slices lie beyond the apex and hold no heart.
        misalignment: standard deviation (pixels) of a per-slice in-plane shift of the heart (breath-hold
            mismatch between slices).
    """

    myocardium: float = 230.0
    blur: float = 0.7
    bias_gain: float = 1.0
    noise_gain: float = 1.0
    papillary: bool = False
    rv_irregularity: float = 0.0
    apex_gap: int = 0
    misalignment: float = 0.0


CARDIAC_SCANNERS = {
    "A": CardiacScanner(),
    "B": CardiacScanner(spacing=1.25, gamma=0.6, max_intensity=4000.0, bias=0.45, noise=120.0),
}
CARDIAC_DIFFICULTIES = {
    "standard": CardiacDifficulty(),
    "hard": CardiacDifficulty(
        myocardium=275.0,
        blur=1.3,
        bias_gain=1.6,
        noise_gain=1.4,
        papillary=True,
        rv_irregularity=0.25,
        apex_gap=2,
        misalignment=1.0,
    ),
}


def _preset(value: object, presets: dict[str, object], kind: type, name: str) -> object:
    """``value`` if it is a ``kind`` already, else the preset it names."""
    if isinstance(value, kind):
        return value
    if value not in presets:
        raise ValueError(f"{name} must be one of {sorted(presets)} or a {kind.__name__}, got {value!r}.")
    return presets[value]


def _resize(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of a smooth 2D field to ``shape`` (the same field of view)."""
    if field.shape == shape:
        return field
    image = Image.fromarray(np.asarray(field, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize(shape[::-1], Image.BILINEAR))


def make_synthetic_acdc(
    out: str | Path,
    seed: int = 0,
    n_patients: int = 10,
    shape: Sequence[int] = (64, 64, 8),
    frames: Sequence[int] = (1, 12),
    scanner: str | CardiacScanner = "A",
    difficulty: str | CardiacDifficulty = "standard",
) -> dict:
    """Write a synthetic cardiac MRI set in the ACDC layout (``patientXXX/patientXXX_frameYY[_gt].nii.gz``).

    Each frame is a short-axis stack: left-ventricle blood pool (label 3), myocardium ring (2) and a right
    ventricle crescent (1) that shrink from base to apex, with per-patient position, size, LV eccentricity and
    RV angle; frame 12 (end-systole) is smaller than frame 1 (end-diastole). To keep the task from being
    solvable by intensity alone, as in real cine MRI: the myocardium is only slightly darker than the
    surrounding tissue, both blood pools are equally bright, an unlabelled bright aorta and a dark lung sit next
    to the heart in basal slices, and a smooth bias field, textured tissue and Rician-like noise cover
    everything.

    ``scanner`` changes the acquisition only: the same seed gives the same anatomy (in millimetres) on every
    scanner, so a model trained on scanner ``A`` can be tested on ``B`` (finer spacing, so a larger image;
    a compressed contrast curve; a 0-4000 range; stronger bias field and noise). ``difficulty="hard"`` lowers
    the myocardium contrast, blurs more (partial volume), strengthens bias and noise and varies the shapes
    (papillary muscles, irregular RV, empty slices beyond the apex, slice misalignment); anatomy it adds comes
    from its own random stream, so it too is the same on every scanner. Scanner ``A`` with ``standard``
    difficulty is the set this generator has always written.

    Args:
        out: dataset root.
        seed: random seed; the same seed and options give identical files.
        n_patients: patients, each with one volume per frame.
        shape: (X, Y, Z) at scanner A's 1.5 mm spacing; the image size of another spacing follows from it.
        frames: frame numbers; the first is end-diastole, the others end-systole.
        scanner: ``"A"``, ``"B"`` (see ``CARDIAC_SCANNERS``) or a :class:`CardiacScanner`.
        difficulty: ``"standard"``, ``"hard"`` (see ``CARDIAC_DIFFICULTIES``) or a :class:`CardiacDifficulty`.

    Returns:
        summary with the patient count, frames, label map, image shape, spacing, scanner and difficulty.

    Raises:
        ValueError: for a shape too small, an unknown scanner or difficulty, or an intensity range int16 cannot
            store.
    """
    import nibabel as nib

    if len(shape) != 3 or min(shape[:2]) < 24 or shape[2] < 2:
        raise ValueError(f"shape must be (X >= 24, Y >= 24, Z >= 2), got {tuple(shape)}.")
    scanner = _preset(scanner, CARDIAC_SCANNERS, CardiacScanner, "scanner")
    difficulty = _preset(difficulty, CARDIAC_DIFFICULTIES, CardiacDifficulty, "difficulty")
    if not 0 < scanner.max_intensity <= np.iinfo(np.int16).max or scanner.spacing <= 0:
        raise ValueError(f"scanner needs spacing > 0 and 0 < max_intensity <= 32767, got {scanner}.")
    rng = np.random.default_rng(seed)  # anatomy and scanner A's textures and noise, in the original order
    shape_rng = np.random.default_rng([seed, 1])  # the anatomy `difficulty` adds
    noise_rng = np.random.default_rng([seed, 2])  # noise on a grid other than scanner A's
    out = Path(out)
    nx, ny, nz = shape
    ratio = scanner.spacing / CARDIAC_SCANNERS["A"].spacing
    grid = (int(round(nx / ratio)), int(round(ny / ratio)))
    # pixel centres in scanner-A pixel units: the anatomy below is drawn in those units on any grid
    xx, yy = np.meshgrid(
        (np.arange(grid[0]) + 0.5) * ratio - 0.5, (np.arange(grid[1]) + 0.5) * ratio - 0.5, indexing="ij"
    )
    affine = np.diag([scanner.spacing, scanner.spacing, 8.0, 1.0])
    noise = scanner.noise * difficulty.noise_gain
    for p in range(1, n_patients + 1):
        patient = f"patient{p:03d}"
        (out / patient).mkdir(parents=True, exist_ok=True)
        cx, cy = nx * rng.uniform(0.4, 0.6), ny * rng.uniform(0.4, 0.6)
        radius = min(nx, ny) * rng.uniform(0.1, 0.15)
        squash, tilt = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
        rv_angle = np.pi + rng.uniform(-0.6, 0.6)
        brightness = rng.uniform(0.85, 1.15)
        bias = _blur(rng.standard_normal((nx, ny)), sigma=min(nx, ny) / 4)
        bias = _resize(1.0 + scanner.bias * difficulty.bias_gain * bias / max(1e-6, float(np.abs(bias).max())), grid)
        rv_bumps = difficulty.rv_irregularity * shape_rng.uniform(-1, 1, 3)
        rv_phases = shape_rng.uniform(0, 2 * np.pi, 3)
        apex = nz - 1 - int(shape_rng.integers(0, difficulty.apex_gap + 1))
        papillary_angles = tilt + np.array([0.7, -0.7]) + shape_rng.uniform(-0.3, 0.3, 2)
        for frame in frames:
            contraction = 1.0 if frame == frames[0] else rng.uniform(0.7, 0.8)
            shifts = shape_rng.normal(0.0, difficulty.misalignment, (nz, 2))
            labels = np.zeros((*grid, nz), np.uint8)
            intensity = np.empty((*grid, nz), np.float32)
            for z in range(nz):
                zx, zy = cx + shifts[z, 0], cy + shifts[z, 1]
                taper = 1.0 - 0.6 * z / max(1, apex)  # base (z = 0) to apex
                r_lv = radius * taper * contraction
                u = (xx - zx) * np.cos(tilt) + (yy - zy) * np.sin(tilt)
                v = ((yy - zy) * np.cos(tilt) - (xx - zx) * np.sin(tilt)) / squash
                d = np.hypot(u, v)
                rx, ry = zx + 1.6 * r_lv * np.cos(rv_angle), zy + 1.6 * r_lv * np.sin(rv_angle)
                a = (xx - rx) * np.cos(rv_angle) + (yy - ry) * np.sin(rv_angle)
                b = (yy - ry) * np.cos(rv_angle) - (xx - rx) * np.sin(rv_angle)
                phi = np.arctan2(b, a)
                outline = 1.0 + sum(
                    c * np.cos(k * phi + f) for k, c, f in zip((2, 3, 4), rv_bumps, rv_phases, strict=True)
                )
                rv = (np.hypot(a, 0.7 * b) < 1.4 * r_lv * outline) & (np.hypot(xx - zx, yy - zy) > r_lv + 0.35 * radius)
                slice_labels = labels[..., z]
                if z < apex:
                    slice_labels[rv] = 1
                if z <= apex:
                    slice_labels[d < r_lv + 0.3 * radius] = 2
                    slice_labels[d < r_lv] = 3
                texture = _blur(rng.standard_normal((nx, ny)), 1.5)
                tissue = 300.0 + 40.0 * _resize(texture, grid)
                image = np.where(slice_labels == 2, difficulty.myocardium, tissue)
                image[(slice_labels == 1) | (slice_labels == 3)] = 720.0
                if difficulty.papillary and 0 < z < apex - 1:
                    for angle in papillary_angles:
                        px, py = zx + 0.55 * r_lv * np.cos(angle), zy + 0.55 * r_lv * np.sin(angle)
                        image[(np.hypot(xx - px, yy - py) < 0.25 * r_lv) & (slice_labels == 3)] = difficulty.myocardium
                if z < nz // 2:  # basal slices: aorta (bright, unlabelled) and lung (dark)
                    ax, ay = zx - 1.8 * radius * np.cos(rv_angle), zy - 2.2 * radius
                    aorta = np.hypot(xx - ax, yy - ay) < 0.45 * radius
                    image[aorta & (slice_labels == 0)] = 700.0
                    lung = (xx - zx) * np.cos(rv_angle) + (yy - zy) * np.sin(rv_angle) < -3.2 * radius
                    image[lung & (slice_labels == 0)] = 60.0
                if scanner.gamma != 1.0:
                    image = 1000.0 * (np.maximum(image, 0.0) / 1000.0) ** scanner.gamma
                image = _blur(image, difficulty.blur / ratio) * bias * brightness
                # scanner A's noise is drawn on every scanner, so that the anatomy stream stays the same
                stream_noise = rng.standard_normal((2, nx, ny))
                white = stream_noise if grid == (nx, ny) else noise_rng.standard_normal((2, *grid))
                intensity[..., z] = np.hypot(image + noise * white[0], noise * white[1])
            stem = f"{patient}_frame{frame:02d}"
            scale = scanner.max_intensity / 1000.0
            nib.save(
                nib.Nifti1Image(np.clip(intensity * scale, 0, scanner.max_intensity).astype(np.int16), affine),
                str(out / patient / f"{stem}.nii.gz"),
            )
            nib.save(nib.Nifti1Image(labels, affine), str(out / patient / f"{stem}_gt.nii.gz"))
    return {
        "kind": "acdc",
        "seed": seed,
        "n_patients": n_patients,
        "frames": list(frames),
        "labels": ACDC_CLASS_NAMES,
        "shape": [*grid, nz],
        "spacing": [scanner.spacing, scanner.spacing, 8.0],
        "scanner": asdict(scanner),
        "difficulty": asdict(difficulty),
    }


def _speckle(shape: tuple[int, int], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle: the magnitude of smoothed complex Gaussian noise (Rayleigh), mean 1."""
    real, imag = (_blur(rng.standard_normal(shape), grain) for _ in range(2))
    magnitude = np.hypot(real, imag)
    return magnitude / float(magnitude.mean())


def _breast_tissue(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity (0-1) of the layers a linear probe sees: bright skin line, hypoechoic fat, textured
    fibroglandular tissue, pectoral muscle; the layer boundaries undulate."""
    depth = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None] / height, (height, width))

    def boundary(level: float) -> np.ndarray:
        return level + 0.04 * _smooth_noise((1, width), 4, rng)[0]

    tissue = np.full((height, width), 0.55, dtype=np.float32) + 0.12 * _smooth_noise((height, width), 6, rng)
    tissue[depth < boundary(0.3)] = 0.25  # subcutaneous fat
    tissue[depth < 0.04] = 0.85  # skin
    tissue[depth > boundary(0.78)] = 0.4  # pectoral muscle
    return tissue


def _lesion(height: int, width: int, malignant: bool, rng: np.random.Generator) -> np.ndarray:
    """A lesion mask: an oval with a smooth outline (benign: wider than tall) or an irregular, spiculated one
    (malignant: about as tall as wide), from a polar radius with random harmonics."""
    row, col = height * rng.uniform(0.4, 0.62), width * rng.uniform(0.3, 0.7)
    radius = min(height, width) * rng.uniform(0.09, 0.16)
    aspect = rng.uniform(0.85, 1.15) if malignant else rng.uniform(0.55, 0.75)  # height / width
    harmonics = np.arange(2, 13 if malignant else 4)
    amplitudes = rng.uniform(0.0, 0.18 if malignant else 0.05, len(harmonics)) / np.sqrt(harmonics - 1)
    phases = rng.uniform(0, 2 * np.pi, len(harmonics))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = (yy - row) / aspect, xx - col
    theta = np.arctan2(dy, dx)
    outline = 1.0 + sum(a * np.cos(k * theta + f) for k, a, f in zip(harmonics, amplitudes, phases, strict=True))
    return np.hypot(dy, dx) < radius * outline


def _ultrasound(tissue: np.ndarray, lesions: Sequence[np.ndarray], malignant: bool, rng: np.random.Generator):
    """B-mode image (0-255 uint8) of ``tissue`` with hypoechoic ``lesions``: posterior acoustic enhancement
    below benign lesions, shadowing below malignant ones, depth attenuation and speckle."""
    height, width = tissue.shape
    echo = tissue.copy()
    for lesion in lesions:
        echo[lesion] = rng.uniform(0.08, 0.16)
        columns = lesion.any(0)
        below = np.cumsum(lesion, axis=0) > 0
        posterior = _blur((below & ~lesion & columns[None]).astype(np.float32), 2.0)
        echo *= 1.0 + (-0.5 if malignant else 0.35) * posterior
    echo = _blur(echo, 1.0) * np.exp(-1.2 * np.arange(height, dtype=np.float32)[:, None] / height)
    image = echo * _speckle((height, width), 0.8, rng) * rng.uniform(0.8, 1.1)
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def make_synthetic_busi(
    out: str | Path,
    seed: int = 0,
    n_benign: int = 8,
    n_malignant: int = 6,
    n_normal: int = 4,
    size: int = 96,
    second_lesion: float = 0.2,
) -> dict:
    """Write a synthetic breast ultrasound set in the BUSI layout (Al-Dhabyani et al. 2020)::

        <out>/benign/benign (1).png, benign (1)_mask.png, benign (1)_mask_1.png (a second lesion), ...
        <out>/malignant/malignant (1).png, malignant (1)_mask.png, ...
        <out>/normal/normal (1).png, normal (1)_mask.png (empty), ...

    Images are grey scans stored as RGB PNGs, as BUSI's are, ``size`` pixels high and up to 1.5 x ``size`` wide
    (BUSI's sizes vary too); masks are 0/255 grey PNGs. Each image shows speckled tissue layers (skin, fat,
    fibroglandular tissue, muscle) with depth attenuation; benign images hold a smooth, wider-than-tall
    hypoechoic lesion with posterior enhancement (and, with probability ``second_lesion``, a second one in its
    own ``_mask_1.png``), malignant images an irregular, spiculated lesion with posterior shadowing, normal
    images none (an empty mask).

    Args:
        out: dataset root.
        seed: random seed; the same seed and options give identical files.
        n_benign, n_malignant, n_normal: images per class.
        size: image height in pixels.
        second_lesion: probability that a benign image holds a second lesion.

    Returns:
        summary with the image counts per class and the number of images with two masks.

    Raises:
        ValueError: for a size below 32 pixels.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}.")
    rng = np.random.default_rng(seed)
    out = Path(out)
    counts = {"benign": n_benign, "malignant": n_malignant, "normal": n_normal}
    two_masks = 0
    for cls, count in counts.items():
        (out / cls).mkdir(parents=True, exist_ok=True)
        for index in range(1, count + 1):
            height, width = size, size + int(rng.integers(0, size // 2 + 1))
            n_lesions = 0 if cls == "normal" else 1 + int(cls == "benign" and rng.uniform() < second_lesion)
            lesions = [_lesion(height, width, cls == "malignant", rng) for _ in range(n_lesions)]
            image = _ultrasound(_breast_tissue(height, width, rng), lesions, cls == "malignant", rng)
            stem = f"{cls} ({index})"
            Image.fromarray(np.repeat(image[..., None], 3, axis=2)).save(out / cls / f"{stem}.png")
            masks = lesions or [np.zeros((height, width), dtype=bool)]
            for m, mask in enumerate(masks):
                suffix = "_mask" if m == 0 else f"_mask_{m}"
                Image.fromarray(mask.astype(np.uint8) * 255).save(out / cls / f"{stem}{suffix}.png")
            two_masks += len(masks) > 1
    return {"kind": "busi", "seed": seed, "size": size, "counts": counts, "images_with_two_masks": two_masks}


SYNTHETIC_MAKERS = {  # layout kind -> writer (``lmseg make-synthetic --kind``, ci/bundles.json's ``synthetic.kind``)
    "lvit": make_synthetic_lvit,
    "msd": make_synthetic_msd,
    "acdc": make_synthetic_acdc,
    "busi": make_synthetic_busi,
}
