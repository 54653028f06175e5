"""Segmentation metrics: per-image and global Dice/IoU for 2D masks, per-class Dice/HD95 for 3D volumes."""

from lmseg_components.metrics.overlap import (
    GlobalDice,
    GlobalIoU,
    GlobalOverlapMetric,
    PerImageDice,
    PerImageIoU,
    PerImageOverlapMetric,
    dice_from_counts,
    iou_from_counts,
    overlap_counts,
    pairwise_mask_dice,
)
from lmseg_components.metrics.volume import HausdorffDistance95, SpacedHausdorffDistanceMetric, per_class_dice_hd95

__all__ = [
    "GlobalDice",
    "GlobalIoU",
    "GlobalOverlapMetric",
    "HausdorffDistance95",
    "SpacedHausdorffDistanceMetric",
    "PerImageDice",
    "PerImageIoU",
    "PerImageOverlapMetric",
    "dice_from_counts",
    "iou_from_counts",
    "overlap_counts",
    "pairwise_mask_dice",
    "per_class_dice_hd95",
]
