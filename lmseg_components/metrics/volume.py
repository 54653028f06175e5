"""3D per-class Dice and HD95 of label volumes, through monai.metrics; HD95 in mm from each volume's affine."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data.utils import affine_to_spacing
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.utils import one_hot

__all__ = ["HausdorffDistance95", "SpacedHausdorffDistanceMetric", "per_class_dice_hd95"]


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


class SpacedHausdorffDistanceMetric(HausdorffDistanceMetric):
    """MONAI's Hausdorff distance in physical units: each item's voxel size comes from its own ``affine``
    (a MetaTensor read from NIfTI, e.g. a prediction inverted to the input grid; a batch's (B, 4, 4) affines give
    one voxel size per item), as the affine's column norms, right for oblique orientations too. Plain tensors
    count in voxels.

    Args:
        kwargs: :class:`~monai.metrics.HausdorffDistanceMetric` options (``include_background``, ``percentile``, ...).
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        affine = getattr(y_pred, "affine", None)
        if kwargs.get("spacing") is None and affine is not None:
            affines = affine if affine.ndim == 3 else affine[None].expand(y_pred.shape[0], -1, -1)
            if len(affines) != y_pred.shape[0]:
                raise ValueError(f"{len(affines)} affines for a batch of {y_pred.shape[0]} items.")
            kwargs["spacing"] = [affine_to_spacing(a, r=y_pred.ndim - 2).tolist() for a in affines]
        return super()._compute_tensor(y_pred, y, **kwargs)


class HausdorffDistance95(IgniteMetricHandler):
    """Ignite handler: 95th-percentile Hausdorff distance per class (in mm for NIfTI-backed predictions), the
    mean over classes and volumes as the metric, per-volume per-class values in ``metric_details``.

    Args:
        include_background: whether channel 0 is a class (True for one sigmoid channel per organ).
        output_transform: engine output -> (y_pred, y), both one-hot (B, C, *spatial).
        save_details: keep per-volume values for ``MetricsSaver``.
    """

    def __init__(self, include_background: bool = True, output_transform=lambda x: x, save_details: bool = True):
        metric = SpacedHausdorffDistanceMetric(include_background=include_background, percentile=95.0)
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=save_details)
