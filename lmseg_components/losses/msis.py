"""MSIS-Loss of TIRNet: segmentation + region-grounded contrastive (RGC) + background suppression (BS)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["resize_mask", "RGCLoss", "BSLoss", "MSISLoss"]


def resize_mask(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a binary (B, 1, H, W) mask to ``size`` by area averaging, then threshold at 0.5."""
    if tuple(target.shape[-2:]) == tuple(size):
        return (target > 0.5).to(target.dtype)
    return (F.interpolate(target.float(), size=tuple(size), mode="area") > 0.5).to(target.dtype)


class RGCLoss(nn.Module):
    """Region-grounded contrastive loss on the RTMB similarity maps.

    For each image and stage, with A the similarity map and G the ground truth resized to the stage:
    ``cover = mean(exp(clamp(A, -20, 20)))`` over G's foreground, ``leak`` the same over its background,
    ``loss = -log(cover / (cover + leak))``, computed in log space. Images whose resized mask is empty (or has
    no background) are skipped; the result is the mean over the remaining (image, stage) pairs, and 0 if none.
    """

    def forward(self, sims: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """sims: per-stage (B, 1, h, w) maps; target: (B, 1, H, W) binary mask. Returns a scalar."""
        losses = []
        for sim in sims:
            gt = resize_mask(target, sim.shape[-2:]).flatten(1) > 0.5
            a = sim.clamp(-20.0, 20.0).flatten(1)
            n_fg, n_bg = gt.sum(1), (~gt).sum(1)
            valid = (n_fg > 0) & (n_bg > 0)
            if not bool(valid.any()):
                continue
            neg_inf = torch.finfo(a.dtype).min
            log_cover = a.masked_fill(~gt, neg_inf).logsumexp(1) - n_fg.clamp_min(1).log()
            log_leak = a.masked_fill(gt, neg_inf).logsumexp(1) - n_bg.clamp_min(1).log()
            losses.append(F.softplus(log_leak - log_cover)[valid])
        if not losses:
            return sum(s.sum() for s in sims) * 0.0 if sims else target.new_zeros(())
        return torch.cat(losses).mean()


class BSLoss(nn.Module):
    """Background suppression: BCE(L-, 1 - G) per stage (G resized to the stage), averaged over stages."""

    def forward(self, l_negs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """l_negs: per-stage (B, 1, h, w) maps in (0, 1); target: (B, 1, H, W). Returns a scalar."""
        if not l_negs:
            return target.new_zeros(())
        eps = 1e-6
        return torch.stack(
            [
                F.binary_cross_entropy(m.clamp(eps, 1 - eps), 1.0 - resize_mask(target, m.shape[-2:]).to(m.dtype))
                for m in l_negs
            ]
        ).mean()


class MSISLoss(nn.Module):
    """TIRNet's training loss: ``seg_weight * (0.5 Dice + 0.5 BCE) + rgc_weight * RGC + bs_weight * BS``.

    Args:
        seg_weight, rgc_weight, bs_weight: term weights (1.0, 1.0, 0.5 in the paper); 0 switches a term off.
        dice_weight, bce_weight: the segmentation term's mix (0.5, 0.5).

    Forward:
        ``output``: TIRNet's training output ``(logits, sims, l_negs)``, or logits alone (segmentation term only);
        ``target``: (B, 1, H, W) binary mask.
    """

    def __init__(
        self,
        seg_weight: float = 1.0,
        rgc_weight: float = 1.0,
        bs_weight: float = 0.5,
        dice_weight: float = 0.5,
        bce_weight: float = 0.5,
    ):
        super().__init__()
        if min(seg_weight, rgc_weight, bs_weight, dice_weight, bce_weight) < 0:
            raise ValueError("loss weights must be non-negative.")
        self.seg = DiceCELoss(sigmoid=True, lambda_dice=dice_weight, lambda_ce=bce_weight)
        self.rgc, self.bs = RGCLoss(), BSLoss()
        self.weights = (seg_weight, rgc_weight, bs_weight)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        logits, sims, l_negs = output if isinstance(output, (tuple, list)) else (output, [], [])
        seg = self.seg(logits, target.to(logits.dtype))
        rgc = self.rgc(sims, target) if self.weights[1] > 0 else logits.new_zeros(())
        bs = self.bs(l_negs, target) if self.weights[2] > 0 else logits.new_zeros(())
        return self.weights[0] * seg + self.weights[1] * rgc + self.weights[2] * bs
