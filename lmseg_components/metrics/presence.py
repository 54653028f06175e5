"""Is the finding a prompt names in the image at all? A presence score per prompt from the probability map, the
threshold that separates present from absent on validation prompts, and the area under the ROC curve."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.metrics import compute_roc_auc

__all__ = ["TOP_FRACTION", "choose_presence_threshold", "presence_auroc", "presence_score"]

# the score averages the most probable 0.25 % of the pixels: about the smallest lesion of a 64 px image (10 px),
# and less sensitive to one stray pixel than the maximum
TOP_FRACTION = 0.0025


def presence_score(logits: torch.Tensor, top_fraction: float = TOP_FRACTION) -> torch.Tensor:
    """The presence score of each prompt: the sigmoid of the mean of its ``top_fraction`` highest logits (at least
    one), in float64. Averaging logits rather than probabilities keeps confident prompts apart: the probabilities
    of a well-trained network are 1.0 in float32 on most of a lesion, so their mean ties present and absent
    prompts at 1.

    Args:
        logits: (B, C, *spatial) network outputs before the sigmoid, one channel per prompt.
        top_fraction: the fraction of the pixels averaged.

    Returns:
        (B, C) float64 scores in [0, 1].
    """
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}.")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
    flat = logits.flatten(2).double()
    k = max(1, round(top_fraction * flat.shape[-1]))
    return torch.sigmoid(flat.topk(k, dim=-1).values.mean(-1))


def choose_presence_threshold(present: Sequence[float], absent: Sequence[float]) -> float:
    """The score threshold (``found = score >= threshold``) that maximises Youden's J (true-positive rate minus
    false-positive rate) on scores of prompts whose finding is ``present`` and ``absent``: the midpoint between
    the two neighbouring scores where J is largest (the lowest such threshold where several tie).

    Raises:
        ValueError: either list is empty.
    """
    if not present or not absent:
        raise ValueError(f"need scores of both kinds, got {len(present)} present and {len(absent)} absent.")
    pos, neg = torch.tensor(present, dtype=torch.float64), torch.tensor(absent, dtype=torch.float64)
    scores = torch.cat([pos, neg]).unique()  # sorted
    candidates = torch.cat([scores[:1] - 1e-6, (scores[1:] + scores[:-1]) / 2, scores[-1:] + 1e-6])
    youden = (pos[None] >= candidates[:, None]).double().mean(1) - (neg[None] >= candidates[:, None]).double().mean(1)
    return float(candidates[int(youden.argmax())])


def presence_auroc(present: Sequence[float], absent: Sequence[float]) -> float:
    """Area under the ROC curve of the scores (present: positive); 1 separates the two kinds perfectly, 0.5 is
    chance."""
    scores = torch.tensor([*present, *absent], dtype=torch.float64)
    labels = torch.tensor([1] * len(present) + [0] * len(absent))
    return float(compute_roc_auc(scores, labels))
