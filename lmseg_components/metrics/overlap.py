"""Binary Dice and IoU, per image ("m-") and global ("g-"), as MONAI cumulative metrics and Ignite handlers, and
the pairwise Dice of label maps with which retrieval is judged (how well one mask guides another).

Empty/empty rule (per-image metrics): an image whose prediction and ground truth are both empty has no overlap
to measure. ``empty="one"`` (default, reported in our tables) scores it 1.0 -- the prediction is exactly
right. ``empty="nan"`` scores it NaN and the mean skips it (``nanmean``), as LViT and TIRNet do. On QaTa-COV19,
MosMedData+ and our synthetic set every test image has a lesion, so both rules give the same number there.
Global metrics pool the pixels of all images first; they are 1.0 only if everything is empty.

Against MONAI's ``DiceMetric``: ``empty="one"`` scores as ``DiceMetric(ignore_empty=False)`` does. ``empty="nan"``
has no MONAI equivalent: ``ignore_empty=True`` drops every image with an empty ground truth, also the ones with
a false-positive prediction, which LViT's rule scores 0 (the prompts that name nothing depend on it). One class
computes the four numbers (m-/g-, Dice/IoU) from the same per-image counts.
"""

from __future__ import annotations

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric

__all__ = [
    "overlap_counts",
    "dice_from_counts",
    "iou_from_counts",
    "pairwise_mask_dice",
    "PerImageOverlapMetric",
    "GlobalOverlapMetric",
    "PerImageDice",
    "PerImageIoU",
    "GlobalDice",
    "GlobalIoU",
]

KINDS = ("dice", "iou")
EMPTY_RULES = ("one", "nan")


def overlap_counts(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image |P∩G|, |P|, |G| of binarized masks.

    Args:
        y_pred: (B, 1, ...) prediction, binary (any value > 0.5 counts as foreground).
        y: (B, 1, ...) ground truth, binary.

    Returns:
        (B, 3) float64 counts [intersection, prediction size, ground-truth size].
    """
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
    if y_pred.ndim < 3 or y_pred.shape[1] != 1:
        raise ValueError(f"expected (B, 1, spatial...) binary masks, got shape {tuple(y_pred.shape)}.")
    p = (y_pred > 0.5).flatten(1).double()
    g = (y > 0.5).flatten(1).double()
    return torch.stack([(p * g).sum(1), p.sum(1), g.sum(1)], dim=1)


def dice_from_counts(counts: torch.Tensor, empty_value: float = 1.0) -> torch.Tensor:
    """Dice 2|P∩G| / (|P| + |G|) from (..., 3) counts; ``empty_value`` where both are empty."""
    inter, p, g = counts.unbind(-1)
    denom = p + g
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1e-12), torch.full_like(denom, empty_value))


def iou_from_counts(counts: torch.Tensor, empty_value: float = 1.0) -> torch.Tensor:
    """IoU |P∩G| / |P∪G| from (..., 3) counts; ``empty_value`` where both are empty."""
    inter, p, g = counts.unbind(-1)
    union = p + g - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.full_like(union, empty_value))


def integer_labels(labels) -> torch.Tensor:
    """(B, 1, H, W) integer labels from labels given as integers (B, 1, H, W) or one-hot (B, K, H, W), e.g. a batch
    after MONAI's ``AsDiscreted(to_onehot=...)`` post-processing."""
    labels = torch.as_tensor(labels).as_subclass(torch.Tensor)
    return labels.argmax(1, keepdim=True) if labels.shape[1] > 1 else labels.long()


def pairwise_mask_dice(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mask agreement of every pair of label maps: the Dice of each foreground class, averaged over the classes
    present in either mask; two masks without any foreground agree perfectly (1.0).

    Not MONAI's ``compute_dice``: it scores aligned pairs, while the contrastive targets need all A x B pairs
    (one matrix product per class here); and neither of its empty rules averages over the classes present in
    either mask (``ignore_empty=False`` counts a class absent from both as 1.0, ``ignore_empty=True`` drops a
    class the guide has and the query lacks, so a wrong guide would not be penalised).

    Args:
        a: (A, 1, *spatial) integer labels in [0, num_classes).
        b: (B, 1, *spatial) integer labels, same spatial size.
        num_classes: K, classes including background (label 0).

    Returns:
        (A, B) float32 agreement in [0, 1].
    """
    if a.ndim < 3 or a.shape[1] != 1 or b.shape[1:] != a.shape[1:]:
        raise ValueError(
            f"expected (A, 1, ...) and (B, 1, ...) label maps of one size, got {tuple(a.shape)}, {tuple(b.shape)}."
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    a, b = a.flatten(1).long(), b.to(a.device).flatten(1).long()
    dice = torch.zeros(a.shape[0], b.shape[0], device=a.device)
    present = torch.zeros_like(dice)
    for c in range(1, num_classes):
        qa, qb = (a == c).float(), (b == c).float()
        counts = torch.stack(
            [qa @ qb.T, qa.sum(1, keepdim=True).expand_as(dice), qb.sum(1)[None].expand_as(dice)], dim=-1
        )
        in_either = counts[..., 1] + counts[..., 2] > 0
        dice += torch.where(in_either, dice_from_counts(counts, 0.0), 0.0)
        present += in_either.float()
    return torch.where(present > 0, dice / present.clamp_min(1), torch.ones_like(dice))


def _score(counts: torch.Tensor, kind: str, empty_value: float) -> torch.Tensor:
    return dice_from_counts(counts, empty_value) if kind == "dice" else iou_from_counts(counts, empty_value)


def _check(kind: str, empty: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if empty not in EMPTY_RULES:
        raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}.")


class PerImageOverlapMetric(CumulativeIterationMetric):
    """Per-image ("m-") Dice or IoU, averaged over images at ``aggregate()``.

    Args:
        kind: ``dice`` or ``iou``.
        empty: ``one`` (both-empty images score 1) or ``nan`` (they are skipped by the mean); see module doc.
    """

    def __init__(self, kind: str = "dice", empty: str = "one"):
        super().__init__()
        _check(kind, empty)
        self.kind, self.empty = kind, empty

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Returns (B, 1) scores, one per image (kept per image for ``MetricsSaver`` details)."""
        value = 1.0 if self.empty == "one" else float("nan")
        return _score(overlap_counts(y_pred, y), self.kind, value).unsqueeze(1).float()

    def aggregate(self) -> torch.Tensor:
        scores = self.get_buffer()
        if not isinstance(scores, torch.Tensor) or scores.numel() == 0:
            raise RuntimeError("no image was given to the metric before aggregate().")
        return torch.nanmean(scores)


class GlobalOverlapMetric(CumulativeIterationMetric):
    """Global ("g-") Dice or IoU: the pixels of all images are pooled, then the score is computed once."""

    def __init__(self, kind: str = "dice"):
        super().__init__()
        _check(kind, "one")
        self.kind = kind

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return overlap_counts(y_pred, y)

    def aggregate(self) -> torch.Tensor:
        counts = self.get_buffer()
        if not isinstance(counts, torch.Tensor) or counts.numel() == 0:
            raise RuntimeError("no image was given to the metric before aggregate().")
        return _score(counts.sum(0), self.kind, 1.0).float()


class PerImageDice(IgniteMetricHandler):
    """Ignite metric for MONAI evaluators: per-image Dice (m-Dice); per-image values go to ``metric_details``."""

    def __init__(self, empty: str = "one", output_transform=lambda x: x, save_details: bool = True):
        super().__init__(
            PerImageOverlapMetric("dice", empty), output_transform=output_transform, save_details=save_details
        )


class PerImageIoU(IgniteMetricHandler):
    """Ignite metric for MONAI evaluators: per-image IoU (m-IoU)."""

    def __init__(self, empty: str = "one", output_transform=lambda x: x, save_details: bool = True):
        super().__init__(
            PerImageOverlapMetric("iou", empty), output_transform=output_transform, save_details=save_details
        )


class GlobalDice(IgniteMetricHandler):
    """Ignite metric for MONAI evaluators: global Dice (g-Dice)."""

    def __init__(self, output_transform=lambda x: x):
        super().__init__(GlobalOverlapMetric("dice"), output_transform=output_transform, save_details=False)


class GlobalIoU(IgniteMetricHandler):
    """Ignite metric for MONAI evaluators: global IoU (g-IoU)."""

    def __init__(self, output_transform=lambda x: x):
        super().__init__(GlobalOverlapMetric("iou"), output_transform=output_transform, save_details=False)
