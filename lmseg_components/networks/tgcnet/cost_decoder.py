"""TGC-Net's cost-aggregating decoder (after CAT-Seg): a cosine cost volume between visual features and one
text embedding per prompt, aggregated over space and over prompts, then upsampled with guidance from the encoder's
stride-16 and stride-8 levels (TGC-Net: the SSE's hybrid pyramid)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["CostAggregationDecoder", "cosine_cost"]


def cosine_cost(visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel of ``visual`` (B, C, H, W) with each prompt of ``text`` (B, P, C):
    (B, P, H, W)."""
    return torch.einsum("bchw,bpc->bphw", F.normalize(visual, dim=1), F.normalize(text, dim=-1))


class CostAggregationDecoder(nn.Module):
    """Cost volume -> spatial aggregation -> prompt aggregation -> guided upsampling -> one logit map per prompt.

    Args:
        dim: C, width of the visual features, text embeddings and guidance maps.
        cost_dim: width of the cost embedding.
        n_heads: heads of the prompt-aggregation attention.

    Forward:
        ``visual`` (B, C, h, w) (stride 32), ``text`` (B, P, C), ``guidance`` [(B, C, 2h, 2w) stride 16,
        (B, C, 4h, 4w) stride 8] (the high-resolution levels, coarse first), ``size`` the output (H, W) ->
        logits (B, P, H, W).
    """

    def __init__(self, dim: int = 256, cost_dim: int = 64, n_heads: int = 4):
        super().__init__()
        if cost_dim % n_heads:
            raise ValueError(f"cost_dim ({cost_dim}) must be divisible by n_heads ({n_heads}).")
        self.cost_embed = nn.Conv2d(1, cost_dim, 7, padding=3)
        self.visual_guide = nn.Conv2d(dim, cost_dim, 1)
        self.spatial = nn.Sequential(
            ResidualUnit(2, 2 * cost_dim, cost_dim, kernel_size=3, subunits=2, norm="batch", act="gelu"),
            ResidualUnit(2, cost_dim, cost_dim, kernel_size=3, subunits=2, norm="batch", act="gelu"),
        )
        self.prompt = nn.TransformerEncoderLayer(
            cost_dim, n_heads, dim_feedforward=2 * cost_dim, batch_first=True, norm_first=True, dropout=0.0
        )
        self.guides = nn.ModuleList([nn.Conv2d(dim, cost_dim // 2, 1) for _ in range(2)])
        self.up = nn.ModuleList(
            [
                Convolution(2, cost_dim + cost_dim // 2, cost_dim, kernel_size=3, norm="batch", act="gelu")
                for _ in range(2)
            ]
        )
        self.head = nn.Conv2d(cost_dim, 1, 3, padding=1)

    def forward(
        self, visual: torch.Tensor, text: torch.Tensor, guidance: Sequence[torch.Tensor], size: Sequence[int]
    ) -> torch.Tensor:
        b, p = text.shape[:2]
        cost = cosine_cost(visual, text).flatten(0, 1)[:, None]  # (B * P, 1, h, w)
        guide = self.visual_guide(visual).repeat_interleave(p, 0)
        x = self.spatial(torch.cat([self.cost_embed(cost), guide], 1))  # (B * P, D, h, w)
        d, h, w = x.shape[1:]
        tokens = x.view(b, p, d, h * w).permute(0, 3, 1, 2).reshape(b * h * w, p, d)  # prompts of one pixel
        x = self.prompt(tokens).view(b, h * w, p, d).permute(0, 2, 3, 1).reshape(b * p, d, h, w)
        for level, (proj, up) in enumerate(zip(self.guides, self.up, strict=True)):
            g = guidance[level]
            x = F.interpolate(x, size=g.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, proj(g).repeat_interleave(p, 0)], 1))
        logits = F.interpolate(self.head(x), size=tuple(size), mode="bilinear", align_corners=False)
        return logits.view(b, p, *logits.shape[-2:])
