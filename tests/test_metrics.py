import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine

from lmseg_components.metrics import (
    GlobalDice,
    GlobalIoU,
    GlobalOverlapMetric,
    PerImageDice,
    PerImageIoU,
    PerImageOverlapMetric,
    per_class_dice_hd95,
)


def _masks():
    """Image 0: prediction 2x2 inside a 2x4 ground truth; image 1: both empty; image 2: miss."""
    pred, gt = torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)
    pred[0, 0, :2, :2] = 1
    gt[0, 0, :2, :] = 1
    gt[2, 0, 3, 3] = 1
    return pred, gt


@pytest.mark.parametrize(
    "metric,expected",
    [
        (PerImageOverlapMetric("dice", "one"), (8 / 12 + 1 + 0) / 3),
        (PerImageOverlapMetric("dice", "nan"), (8 / 12 + 0) / 2),
        (PerImageOverlapMetric("iou", "one"), (4 / 8 + 1 + 0) / 3),
        (PerImageOverlapMetric("iou", "nan"), (4 / 8 + 0) / 2),
        (GlobalOverlapMetric("dice"), 2 * 4 / (4 + 9)),
        (GlobalOverlapMetric("iou"), 4 / 9),
    ],
)
def test_hand_computed_values(metric, expected):
    pred, gt = _masks()
    metric(pred[:2], gt[:2])
    metric(pred[2:], gt[2:])
    assert math.isclose(metric.aggregate().item(), expected, rel_tol=1e-6)


def test_all_empty_global_is_one():
    metric = GlobalOverlapMetric("dice")
    metric(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))
    assert metric.aggregate().item() == 1.0


def test_errors():
    with pytest.raises(ValueError, match="kind"):
        PerImageOverlapMetric("hd")
    with pytest.raises(ValueError, match="same shape"):
        PerImageOverlapMetric()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(RuntimeError, match="no image"):
        GlobalOverlapMetric().aggregate()


def test_ignite_handlers_in_an_engine():
    pred, gt = _masks()

    def step(engine, i):
        return {"pred": pred[i : i + 1], "label": gt[i : i + 1]}

    engine = Engine(step)
    transform = from_engine(["pred", "label"])
    for name, metric in {
        "mdice": PerImageDice(output_transform=transform),
        "miou": PerImageIoU(output_transform=transform),
        "gdice": GlobalDice(output_transform=transform),
        "giou": GlobalIoU(output_transform=transform),
    }.items():
        metric.attach(engine, name)
    engine.run([0, 1, 2], max_epochs=1)
    assert math.isclose(engine.state.metrics["mdice"], (8 / 12 + 1) / 3, rel_tol=1e-6)
    assert math.isclose(engine.state.metrics["gdice"], 8 / 13, rel_tol=1e-6)
    assert math.isclose(engine.state.metrics["giou"], 4 / 9, rel_tol=1e-6)
    assert engine.state.metric_details["mdice"].shape == (3, 1)


def test_3d_per_class_dice_hd95():
    label = torch.zeros(1, 1, 12, 12, 12)
    label[..., 2:6, 2:6, 2:6] = 1
    label[..., 7:11, 7:11, 7:11] = 2
    pred = label.clone()
    pred[..., 7:11, 7:11, 7:11] = 0
    pred[..., 7:11, 7:11, 8:11] = 2  # class 2 loses one slab of 16 voxels and shifts nothing else
    out = per_class_dice_hd95(pred, label, num_classes=3, spacing=(1.0, 1.0, 2.0))
    assert out["dice"].shape == (1, 2)
    assert out["dice"][0, 0].item() == 1.0 and out["hd95"][0, 0].item() == 0.0
    assert math.isclose(out["dice"][0, 1].item(), 2 * 48 / (48 + 64), rel_tol=1e-6)
    assert math.isclose(out["hd95"][0, 1].item(), 2.0, rel_tol=1e-6)  # one voxel along z at 2 mm
