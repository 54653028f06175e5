"""MSIS-Loss of TIRNet: segmentation + region-grounded contrastive (RGC) + background suppression (BS)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["resize_mask", "RGCLoss", "BSLoss", "MSISLoss"]

STAGE_TARGETS = ("fraction", "threshold")
BS_REDUCTIONS = ("sum", "mean")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def resize_mask(target: torch.Tensor, size: Sequence[int], stage_target: str = "fraction") -> torch.Tensor:
    """Resize a binary mask to a decoder stage's size.

    Args:
        target: (B, 1, H, W) binary mask.
        size: the stage's (h, w); H and W are multiples of them in TIRNet.
        stage_target: ``"fraction"`` (default): each cell holds the fraction of its pixels that are lesion
            (area interpolation, values in [0, 1]); the lesion's area is preserved at every stage, so a lesion of
            a few pixels stays visible at the coarsest one. ``"threshold"``: the fraction thresholded at 0.5
            (binary; lesions smaller than half a cell vanish).

    Returns:
        (B, 1, h, w) in ``target``'s dtype if it is floating point, else float32 (fractions must survive).

    Raises:
        ValueError: when ``stage_target`` is not one of the two.
    """
    _check_choice("stage_target", stage_target, STAGE_TARGETS)
    binary = (target > 0.5).float()
    fraction = (
        binary if tuple(binary.shape[-2:]) == tuple(size) else F.interpolate(binary, size=tuple(size), mode="area")
    )
    if stage_target == "threshold":
        fraction = (fraction > 0.5).float()
    return fraction.to(target.dtype) if target.is_floating_point() else fraction


def _masked_log_mean_exp(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``log(sum_i w_i exp(v_i) / sum_i w_i)`` per row of (B, N) ``values`` and non-negative ``weights``, computed
    in log space. Rows without weight give a finite placeholder (the caller drops them)."""
    log_w = (
        weights.clamp_min(torch.finfo(values.dtype).tiny).log().masked_fill(weights <= 0, torch.finfo(values.dtype).min)
    )
    return (values + log_w).logsumexp(1) - weights.sum(1).clamp_min(torch.finfo(values.dtype).tiny).log()


class RGCLoss(nn.Module):
    """Region-grounded contrastive loss on the RTMB similarity maps (TIRNet, Shi et al., 2026).

    For each image and stage, with A the similarity map and f the ground truth resized to the stage
    (:func:`resize_mask`): ``cover = sum(f * exp(clamp(A, -20, 20))) / sum(f)``, ``leak`` the same with weights
    ``1 - f``, ``loss = -log(cover / (cover + leak))``, computed in log space. With a binary f (full resolution, or
    ``stage_target="threshold"``) cover and leak are the spec's means over the foreground and background pixels;
    with fractions a cell counts towards both in proportion to its lesion area. Images whose resized mask has no
    foreground (or no background) weight are skipped; the result is the mean over the remaining (image, stage)
    pairs, and 0 if none.

    Args:
        stage_target: how the mask is brought to each stage, ``"fraction"`` or ``"threshold"``
            (see :func:`resize_mask`).

    Raises:
        ValueError: when ``stage_target`` is not one of the two.
    """

    def __init__(self, stage_target: str = "fraction"):
        super().__init__()
        _check_choice("stage_target", stage_target, STAGE_TARGETS)
        self.stage_target = stage_target

    def forward(self, sims: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            sims: per-stage similarity maps A, each (B, 1, h, w).
            target: (B, 1, H, W) binary mask.

        Returns:
            scalar.
        """
        losses = []
        for sim in sims:
            fg = resize_mask(target, sim.shape[-2:], self.stage_target).flatten(1).to(sim.dtype)
            bg = 1.0 - fg
            a = sim.clamp(-20.0, 20.0).flatten(1)
            valid = (fg.sum(1) > 0) & (bg.sum(1) > 0)
            if not bool(valid.any()):
                continue
            log_cover, log_leak = _masked_log_mean_exp(a, fg), _masked_log_mean_exp(a, bg)
            losses.append(F.softplus(log_leak - log_cover)[valid])
        if not losses:
            return sum(s.sum() for s in sims) * 0.0 if sims else target.new_zeros(())
        return torch.cat(losses).mean()


class BSLoss(nn.Module):
    """Background suppression: ``BCE(L-, 1 - f)`` per stage, f the ground truth resized to the stage.

    Args:
        reduction: over the stages, ``"sum"`` (default; the spec sums MSIS's stage terms, so each stage weighs as
            much as the segmentation term) or ``"mean"`` (the stage sum divided by their number, 4x weaker with
            TIRNet's 4 stages). Within a stage the BCE is the mean over pixels and images.
        stage_target: how the mask is brought to each stage, ``"fraction"`` (a soft BCE target) or
            ``"threshold"`` (see :func:`resize_mask`).

    Raises:
        ValueError: when ``reduction`` or ``stage_target`` is not one of its choices.
    """

    def __init__(self, reduction: str = "sum", stage_target: str = "fraction"):
        super().__init__()
        _check_choice("reduction", reduction, BS_REDUCTIONS)
        _check_choice("stage_target", stage_target, STAGE_TARGETS)
        self.reduction = reduction
        self.stage_target = stage_target

    def forward(self, l_negs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            l_negs: per-stage negative illumination maps L-, each (B, 1, h, w) in (0, 1).
            target: (B, 1, H, W) binary mask.

        Returns:
            scalar.
        """
        if not l_negs:
            return target.new_zeros(())
        per_stage = torch.stack(
            [self._bce(m, 1.0 - resize_mask(target, m.shape[-2:], self.stage_target)) for m in l_negs]
        )
        return per_stage.sum() if self.reduction == "sum" else per_stage.mean()

    @staticmethod
    def _bce(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Mean binary cross-entropy of probabilities in float32 with autocast off: ``F.binary_cross_entropy`` is
        refused inside CUDA autocast (mixed-precision training), and half precision would round ``log(1 - p)``."""
        with torch.autocast(prob.device.type, enabled=False):
            return F.binary_cross_entropy(prob.float().clamp(eps, 1 - eps), target.float())


class MSISLoss(nn.Module):
    """TIRNet's training loss: ``seg_weight * (0.5 Dice + 0.5 BCE) + rgc_weight * RGC + bs_weight * BS``.

    The segmentation term is on the final logits; RGC (:class:`RGCLoss`, mean over images and stages) and BS
    (:class:`BSLoss`, summed over stages by default) on every decoder stage.

    Args:
        seg_weight: weight of the segmentation term (1.0 in the paper); 0 switches a term off, as for the next two.
        rgc_weight: weight of the RGC term (1.0).
        bs_weight: weight of the BS term (0.5).
        dice_weight: the segmentation term's Dice share (0.5).
        bce_weight: the segmentation term's BCE share (0.5).
        bs_reduction: BS over the stages, ``"sum"`` (the spec) or ``"mean"``.
        stage_target: how the mask is brought to each stage for RGC and BS, ``"fraction"`` (area-preserving) or
            ``"threshold"`` (fraction > 0.5), see :func:`resize_mask`.

    Forward:
        ``output``: TIRNet's training output ``(logits, sims, l_negs)``, or logits alone (segmentation term only);
        ``target``: (B, 1, H, W) binary mask. Returns a scalar.

    Raises:
        ValueError: when a weight is negative or a choice unknown.
    """

    def __init__(
        self,
        seg_weight: float = 1.0,
        rgc_weight: float = 1.0,
        bs_weight: float = 0.5,
        dice_weight: float = 0.5,
        bce_weight: float = 0.5,
        bs_reduction: str = "sum",
        stage_target: str = "fraction",
    ):
        super().__init__()
        weights = {
            "seg_weight": seg_weight,
            "rgc_weight": rgc_weight,
            "bs_weight": bs_weight,
            "dice_weight": dice_weight,
            "bce_weight": bce_weight,
        }
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"loss weights must be non-negative, got {negative}.")
        self.seg = DiceCELoss(sigmoid=True, lambda_dice=dice_weight, lambda_ce=bce_weight)
        self.rgc = RGCLoss(stage_target=stage_target)
        self.bs = BSLoss(reduction=bs_reduction, stage_target=stage_target)
        self.seg_weight, self.rgc_weight, self.bs_weight = seg_weight, rgc_weight, bs_weight

    def forward(
        self,
        output: torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor], Sequence[torch.Tensor]],
        target: torch.Tensor,
    ) -> torch.Tensor:
        logits, sims, l_negs = output if isinstance(output, (tuple, list)) else (output, [], [])
        seg = self.seg(logits, target.to(logits.dtype))
        rgc = self.rgc(sims, target) if self.rgc_weight > 0 else logits.new_zeros(())
        bs = self.bs(l_negs, target) if self.bs_weight > 0 else logits.new_zeros(())
        return self.seg_weight * seg + self.rgc_weight * rgc + self.bs_weight * bs
