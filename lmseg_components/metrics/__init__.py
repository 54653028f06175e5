"""Segmentation metrics: per-image and global Dice/IoU for 2D masks, per-class Dice/HD95 for 3D volumes, the
ACDC per-frame protocol (Dice and HD95 in mm per structure of 3D frames segmented slice by slice), and whether the
finding a prompt names is there at all (presence score, threshold, AUROC)."""

from lmseg_components.metrics.acdc import (
    ACDC_STRUCTURES,
    FrameDiceHD95,
    frame_dice_hd95,
    hd95_penalty,
    summarize_frames,
)
from lmseg_components.metrics.overlap import (
    GlobalDice,
    GlobalIoU,
    GlobalOverlapMetric,
    PerImageDice,
    PerImageIoU,
    PerImageOverlapMetric,
    dice_from_counts,
    integer_labels,
    iou_from_counts,
    overlap_counts,
    pairwise_mask_dice,
)
from lmseg_components.metrics.presence import (
    TOP_FRACTION,
    choose_presence_threshold,
    presence_auroc,
    presence_score,
)
from lmseg_components.metrics.volume import HausdorffDistance95, SpacedHausdorffDistanceMetric, per_class_dice_hd95

__all__ = [
    "TOP_FRACTION",
    "choose_presence_threshold",
    "presence_auroc",
    "presence_score",
    "ACDC_STRUCTURES",
    "FrameDiceHD95",
    "GlobalDice",
    "GlobalIoU",
    "GlobalOverlapMetric",
    "HausdorffDistance95",
    "SpacedHausdorffDistanceMetric",
    "PerImageDice",
    "PerImageIoU",
    "PerImageOverlapMetric",
    "dice_from_counts",
    "frame_dice_hd95",
    "hd95_penalty",
    "iou_from_counts",
    "overlap_counts",
    "integer_labels",
    "pairwise_mask_dice",
    "per_class_dice_hd95",
    "summarize_frames",
]
