"""``busi``: breast ultrasound images in the BUSI layout (``benign``, ``malignant``, ``normal`` folders with
``<name>.png`` and ``<name>_mask.png``): speckled tissue layers with a hypoechoic lesion, smooth for benign,
irregular for malignant, none for normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lmseg_components.data.synthetic.shapes import blur, smooth_noise

BUSI_CLASSES = ("benign", "malignant", "normal")


def _speckle(shape: tuple[int, int], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle: the magnitude of smoothed complex Gaussian noise (Rayleigh), mean 1."""
    real, imag = (blur(rng.standard_normal(shape), grain) for _ in range(2))
    magnitude = np.hypot(real, imag)
    return magnitude / float(magnitude.mean())


def _breast_tissue(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity (0-1) of the layers a linear probe sees: bright skin line, hypoechoic fat, textured
    fibroglandular tissue, pectoral muscle; the layer boundaries undulate."""
    depth = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None] / height, (height, width))

    def boundary(level: float) -> np.ndarray:
        return level + 0.04 * smooth_noise((1, width), 4, rng)[0]

    tissue = np.full((height, width), 0.55, dtype=np.float32) + 0.12 * smooth_noise((height, width), 6, rng)
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
        posterior = blur((below & ~lesion & columns[None]).astype(np.float32), 2.0)
        echo *= 1.0 + (-0.5 if malignant else 0.35) * posterior
    echo = blur(echo, 1.0) * np.exp(-1.2 * np.arange(height, dtype=np.float32)[:, None] / height)
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
