"""3D per-class Dice and HD95 of label volumes, through monai.metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.utils import one_hot

__all__ = ["per_class_dice_hd95"]


def per_class_dice_hd95(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
) -> dict[str, torch.Tensor]:
    """Dice and 95th-percentile Hausdorff distance of each foreground class, per volume (or per 2D slice).

    Args:
        pred: (B, 1, X, Y, Z) or (B, 1, X, Y) predicted integer labels.
        label: ground-truth integer labels of the same shape.
        num_classes: number of classes including background (label 0).
        spacing: voxel size (e.g. from the NIfTI header) so HD95 is in mm; None gives voxels.

    Returns:
        ``dice`` and ``hd95``: (B, num_classes - 1) tensors, background excluded. A class absent from both
        prediction and ground truth gets NaN (MONAI's convention), so ``nanmean`` averages over present classes.
    """
    if pred.shape != label.shape or pred.ndim not in (4, 5) or pred.shape[1] != 1:
        raise ValueError(
            f"pred and label must both be (B, 1, X, Y[, Z]) label maps, got {tuple(pred.shape)}, {tuple(label.shape)}."
        )
    p, g = one_hot(pred.long(), num_classes), one_hot(label.long(), num_classes)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(p, g)
    hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(p, g, spacing=spacing)
    return {"dice": dice, "hd95": hd95}
