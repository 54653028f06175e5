"""Image primitives shared by the synthetic datasets: Gaussian blur, smooth noise, ellipses."""

from __future__ import annotations

import numpy as np
from PIL import Image


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders."""
    radius = max(1, int(round(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(img, radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 0, padded, kernel, mode="valid")
    return np.apply_along_axis(np.convolve, 1, rows, kernel, mode="valid").astype(np.float32)


def smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.BICUBIC))


def ellipse(size: int, row: float, col: float, r_row: float, r_col: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((yy - row) / r_row) ** 2 + ((xx - col) / r_col) ** 2 <= 1.0
