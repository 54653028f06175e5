"""``lvit``: grey chest-like radiographs with lesion blobs in named lung zones (upper / middle / lower x left /
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
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lmseg_components.data.lvit import ALL_FINDINGS_FOLDER, FINDINGS_COLUMN, IMAGE_COLUMN, TEXT_COLUMN
from lmseg_components.data.synthetic.shapes import blur, ellipse, smooth_noise
from lmseg_components.text.phrasing import HELD_OUT, LEVELS, SIDES, Area, format_zones

LUNG_LEVELS = LEVELS
LUNG_SIDES = SIDES

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


# the benchmark's names-nothing sentences: the held-out grammar's, never a training negative
UNRELATED_PROMPTS = HELD_OUT.unrelated


def paraphrase_zones(zones: Sequence[LungZone], rng: np.random.Generator) -> str:
    """A description of ``zones`` (1 to 3) in the held-out phrasing (:data:`~lmseg_components.text.phrasing.HELD_OUT`),
    which neither :func:`describe_zones` nor the training augmentation uses: other words for the level (superior,
    caudal, ...), other places (``left-sided field``), other sentences."""
    if not 1 <= len(zones) <= 3:
        raise ValueError(f"paraphrase_zones takes 1 to 3 zones, got {len(zones)}.")
    return HELD_OUT.describe([Area(z.side, (z.level,)) for z in zones], rng)


def _count_distractors(n_targets: int, rng: np.random.Generator) -> int:
    """Distractors per image: n_targets + {0, 1, 2}, so a text-ignoring oracle's Dice 2t / (2t + d) <= 2/3."""
    return min(n_targets + int(rng.integers(0, 3)), len(ALL_ZONES) - n_targets)


def _blob(size: int, zone: LungZone, rng: np.random.Generator) -> np.ndarray:
    """An irregular lesion: 2-3 ellipses jittered around the zone centre; it stays within 0.1 * size of it."""
    row, col = zone.image_center(size)
    row += rng.uniform(-0.03, 0.03) * size
    col += rng.uniform(-0.03, 0.03) * size
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(2, 4))):
        mask |= ellipse(
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
    img[ellipse(size, size * 0.52, size * 0.5, size * 0.47, size * 0.44)] = 0.62
    for side in LUNG_SIDES:
        col = LungZone("middle", side).image_center(size)[1]
        img[ellipse(size, size * 0.5, col, size * 0.34, size * 0.16)] = 0.22
    img[ellipse(size, size * 0.55, size * 0.5, size * 0.3, size * 0.06)] = 0.7
    img = blur(img, size / 64)
    img = img + 0.05 * smooth_noise((size, size), 8, rng) + 0.015 * rng.standard_normal((size, size))
    return img.astype(np.float32)


def _render_lesions(img: np.ndarray, blobs: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    for blob in blobs:
        img = img + rng.uniform(0.28, 0.38) * blur(blob.astype(np.float32), size / 128)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    return np.clip((img - 0.4) * contrast + 0.4 + brightness, 0.0, 1.0)


def _mdice(pred: np.ndarray, gt: np.ndarray) -> float:
    denom = pred.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, gt).sum() / denom)


def _write_table(path: Path, rows: list[tuple[str, str, str]]) -> None:
    header = [IMAGE_COLUMN, TEXT_COLUMN, FINDINGS_COLUMN]
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        return
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)


def _write_lvit_item(
    folder: Path, name: str, naming: str, image: np.ndarray, mask: np.ndarray, blobs: list, text: str, zones: list
) -> tuple[str, str, str]:
    """Write image, mask and every-blob mask of one item into a split folder; return its text-table row (the
    ``Findings`` cell lists the zones of every blob, ``zones``)."""
    mask_name = f"mask_{name}" if naming == "qata" else name
    Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / "img" / name)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "labelcol" / mask_name)
    every_blob = np.any(blobs, axis=0) if blobs else np.zeros_like(mask)
    Image.fromarray(every_blob.astype(np.uint8) * 255).save(folder / ALL_FINDINGS_FOLDER / mask_name)
    return mask_name, text, format_zones([(z.level, z.side) for z in sorted(zones, key=ALL_ZONES.index)])


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
            rows.append(_write_lvit_item(folder, name, naming, image, mask, blobs, describe_zones(targets, rng), zones))
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
                rows.append(_write_lvit_item(folder, name, naming, image, empty, blobs, text, zones[1:]))
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
