"""``acdc``: short-axis cardiac MRI stacks in the ACDC layout (RV, myocardium, LV), for retrieval-augmented
segmentation, on two simulated scanners and at two difficulties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lmseg_components.data.synthetic.shapes import blur

ACDC_CLASS_NAMES = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}


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
    from its own random stream, so it too is the same on every scanner. The defaults, scanner ``A`` and
    ``standard`` difficulty, give the set of the quick start.

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
        bias = blur(rng.standard_normal((nx, ny)), sigma=min(nx, ny) / 4)
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
                texture = blur(rng.standard_normal((nx, ny)), 1.5)
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
                image = blur(image, difficulty.blur / ratio) * bias * brightness
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
