"""The ACDC per-frame protocol (``lmseg_components.metrics.acdc``) and HD95 in mm through the affine
(``metrics/volume.py``), on tiny volumes with hand-computed answers."""

from __future__ import annotations

import csv
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.networks.utils import one_hot

from lmseg_components.metrics import FrameDiceHD95, SpacedHausdorffDistanceMetric, frame_dice_hd95, hd95_penalty

SPACING = (1.5, 1.5, 8.0)  # the synthetic ACDC set's voxel size (mm)
RV, MYO, LV = 1, 2, 3


def _oblique_affine(spacing=SPACING) -> np.ndarray:
    """A rotated (30 deg about z after 20 deg about x) orientation with voxel size ``spacing``: its diagonal is not
    the spacing, its column norms are."""
    a, b = math.radians(30), math.radians(20)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = (-40.0, 12.0, 7.5)
    return affine


def _shifted_blocks() -> tuple[torch.Tensor, torch.Tensor]:
    """(8, 8, 4) labels: ground-truth LV 2x2 at x 2-3, z 1; the prediction one voxel further along x and z.

    Each of the 4 predicted voxels is 8 mm (one slice) or sqrt(1.5^2 + 8^2) mm (a slice and a column) from the
    nearest ground-truth voxel, two of each, and the same the other way: the 95th percentile of
    [8, 8, 8.139, 8.139] (linear interpolation at 2.85) is sqrt(66.25) mm.
    """
    label, pred = torch.zeros(8, 8, 4, dtype=torch.long), torch.zeros(8, 8, 4, dtype=torch.long)
    label[2:4, 2:4, 1] = LV
    pred[3:5, 2:4, 2] = LV
    return pred, label


def test_hd95_in_mm_through_an_oblique_anisotropic_affine():
    pred, label = _shifted_blocks()
    expected = math.sqrt(1.5**2 + 8.0**2)
    affine = torch.as_tensor(_oblique_affine())
    scores = frame_dice_hd95(pred, label, affine_to_spacing(affine, r=3).tolist())
    assert scores["hd95"][LV - 1].item() == pytest.approx(expected, abs=1e-4)

    # metrics/volume.py: each item's voxel size from its own affine, a batch of two different ones
    isotropic = torch.eye(4, dtype=torch.float64)
    isotropic[2, 2] = 2.0  # 1 x 1 x 2 mm: the same shift is sqrt(1 + 4) mm
    channels = [0, LV]  # background and LV: the other structures are absent from both
    batch = MetaTensor(one_hot(torch.stack([pred, pred])[:, None], 4)[:, channels])
    batch.affine, batch.is_batch = torch.stack([affine, isotropic]), True
    truth = one_hot(torch.stack([label, label])[:, None], 4)[:, channels]
    hd = SpacedHausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(batch, truth)
    assert hd[:, 0].tolist() == pytest.approx([expected, math.sqrt(5.0)], abs=1e-4)


def _frame() -> torch.Tensor:
    """(6, 6, 3) ground truth: RV 2x2x2 at x, y 1-2, z 0-1; LV 2x2x2 at x, y 3-4, z 1-2; no myocardium."""
    label = torch.zeros(6, 6, 3, dtype=torch.long)
    label[1:3, 1:3, 0:2] = RV
    label[3:5, 3:5, 1:3] = LV
    return label


PENALTY = math.sqrt((6 * 1.5) ** 2 + (6 * 1.5) ** 2 + (3 * 8.0) ** 2)  # field-of-view diagonal: sqrt(738) mm


def test_penalty_is_the_field_of_view_diagonal_in_mm():
    assert hd95_penalty((6, 6, 3), SPACING) == pytest.approx(PENALTY)


def test_missed_structure_scores_dice_0_and_the_penalty():
    label = _frame()
    pred = label.clone()
    pred[pred == RV] = 0
    scores = frame_dice_hd95(pred, label, SPACING)
    assert scores["dice"].tolist() == pytest.approx([0.0, 1.0, 1.0])  # RV missed, MYO absent in both, LV exact
    assert scores["hd95"].tolist() == pytest.approx([PENALTY, 0.0, 0.0])


def test_hallucinated_structure_scores_dice_0_and_the_penalty():
    label = _frame()
    pred = label.clone()
    pred[0, 5, 2] = MYO  # one voxel of a structure the ground truth does not have
    scores = frame_dice_hd95(pred, label, SPACING)
    assert scores["dice"].tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert scores["hd95"].tolist() == pytest.approx([0.0, PENALTY, 0.0])


def test_structure_absent_from_both_scores_dice_1_and_hd95_0():
    empty = torch.zeros(6, 6, 3, dtype=torch.long)
    scores = frame_dice_hd95(empty, empty, SPACING)
    assert scores["dice"].tolist() == [1.0, 1.0, 1.0] and scores["hd95"].tolist() == [0.0, 0.0, 0.0]


def _write_frame(folder, name: str, label: np.ndarray) -> str:
    path = folder / f"{name}_gt.nii.gz"
    nib.save(nib.Nifti1Image(label.astype(np.uint8), _oblique_affine()), str(path))
    return str(path)


def _run(handler: FrameDiceHD95, batches: list[list[tuple[str, int, torch.Tensor]]]) -> Engine:
    """Run ``handler`` on an evaluator whose iterations hold decollated items made of (source volume, z, predicted
    label slice); the prediction comes out one-hot, as the bundle's postprocessing gives it."""

    def item(source: str, z: int, pred: torch.Tensor) -> dict:
        return {"label": MetaTensor(torch.zeros(1, 3, 3), meta={"source_filename": source}), "slice": z, "p": pred}

    engine = Engine(lambda engine, batch: [{"pred": one_hot(x["p"][None, None], 4)[0]} for x in batch])
    handler.attach(engine)
    engine.run([[item(*x) for x in batch] for batch in batches])
    return engine


def test_slices_are_regrouped_by_frame_and_scored_in_mm_on_the_volume_grid(tmp_path):
    """Two frames of one patient, (6, 6, 2) on disk, predicted at 3x3 per slice (each pixel a 2x2 block once
    resized back) and evaluated interleaved.

    frame01: LV at x, y 2-3 on both slices, predicted exactly -> Dice 1, 1, 1; HD95 0, 0, 0.
    frame12: the same LV plus RV at x, y 0-1 on z 0; the LV predicted on z 0 only -> LV Dice 2*4/(4+8) = 2/3,
    LV HD95 = 95th percentile of [0]*4 + [8]*4 (the ground-truth voxels of z 1 are one 8 mm slice away) = 8 mm
    through the oblique affine; RV exact; no myocardium in either.
    """
    gt01, gt12 = np.zeros((6, 6, 2)), np.zeros((6, 6, 2))
    gt01[2:4, 2:4, :] = LV
    gt12[2:4, 2:4, :] = LV
    gt12[0:2, 0:2, 0] = RV
    f01, f12 = _write_frame(tmp_path, "patient001_frame01", gt01), _write_frame(tmp_path, "patient001_frame12", gt12)
    lv, lv_rv, empty = (torch.zeros(3, 3, dtype=torch.long) for _ in range(3))
    lv[1, 1] = lv_rv[1, 1] = LV
    lv_rv[0, 0] = RV
    handler = FrameDiceHD95(output_dir=tmp_path / "eval")
    engine = _run(handler, [[(f01, 0, lv), (f12, 1, empty)], [(f12, 0, lv_rv), (f01, 1, lv)]])

    assert handler.table["patient001_frame01"]["dice"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert handler.table["patient001_frame12"]["dice"].tolist() == pytest.approx([1.0, 1.0, 2 / 3])
    assert handler.table["patient001_frame12"]["hd95"].tolist() == pytest.approx([0.0, 0.0, 8.0], abs=1e-4)
    expected = {
        "frame_dice_rv": 1.0,
        "frame_dice_myo": 1.0,
        "frame_dice_lv": (1 + 2 / 3) / 2,
        "frame_mean_dice": (1 + 8 / 9) / 2,
        "frame_hd95_rv": 0.0,
        "frame_hd95_myo": 0.0,
        "frame_hd95_lv": 4.0,
        "frame_mean_hd95": (0 + 8 / 3) / 2,
    }
    assert {k: engine.state.metrics[k] for k in expected} == pytest.approx(expected, abs=1e-4)
    with open(tmp_path / "eval" / "frame_metrics.csv") as f:
        rows = {row["frame"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["patient001_frame01", "patient001_frame12", "mean", "std"]
    assert float(rows["patient001_frame12"]["mean_dice"]) == pytest.approx(8 / 9, abs=1e-5)
    assert float(rows["mean"]["hd95_lv"]) == pytest.approx(4.0, abs=1e-4)
    assert float(rows["std"]["dice_lv"]) == pytest.approx(1 / 6, abs=1e-5)


def test_a_frame_with_unevaluated_slices_is_refused(tmp_path):
    gt = np.zeros((6, 6, 2))
    gt[2:4, 2:4, :] = LV
    frame = _write_frame(tmp_path, "patient001_frame01", gt)
    with pytest.raises(RuntimeError, match=r"slices \[1\] were not evaluated"):
        _run(FrameDiceHD95(), [[(frame, 0, torch.zeros(3, 3, dtype=torch.long))]])


def test_disabled_handler_attaches_nothing():
    engine = _run(FrameDiceHD95(enabled=False), [[("not-a-volume.nii.gz", 0, torch.zeros(3, 3, dtype=torch.long))]])
    assert not any(k.startswith("frame_") for k in engine.state.metrics)
