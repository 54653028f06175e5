"""CDCB: Consistent Detail Compensation Block (TIRNet)."""

from __future__ import annotations

import torch
from torch import nn

from lmseg_components.networks.blocks.pooling import avg_pool3x3

__all__ = ["CDCB"]


def _groups(channels: int, max_groups: int = 8) -> int:
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


class CDCB(nn.Module):
    """Recover high-frequency skip details where they agree with the decoder, gated by illumination.

    ``B = Conv3x3(GELU(Conv3x3(D')))``, ``D_raw = E - AvgPool3x3(E)``,
    ``W = sigmoid(delta * sum_c GN(Conv1x1(B)) * GN(Conv1x1(D_raw)))``,
    ``G = sigmoid(Conv1x1(GELU(Conv3x3([B, W * D_raw, L+]))))``, ``out = B + G * W * D_raw``.

    Choices where the spec is silent: ``delta`` starts at ``1 / C`` (so the channel sum starts as a mean
    correlation rather than saturating the sigmoid); the gate's hidden 3x3 convolution has
    ``channels // gate_reduction`` channels and G has C channels (one gate per channel); GroupNorm uses up to
    8 groups.

    Args:
        channels: C, channels of D', E and the output.
        gate_reduction: width reduction of the gate's hidden layer (2 keeps the train step near a U-Net's).
    """

    def __init__(self, channels: int, gate_reduction: int = 2):
        super().__init__()
        if channels < 1 or gate_reduction < 1:
            raise ValueError(f"channels and gate_reduction must be positive, got {channels}, {gate_reduction}.")
        hidden = max(1, channels // gate_reduction)
        self.base = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1)
        )
        groups = _groups(channels)
        self.base_proj = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GroupNorm(groups, channels))
        self.detail_proj = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GroupNorm(groups, channels))
        self.delta = nn.Parameter(torch.tensor(1.0 / channels))
        self.gate = nn.Sequential(
            nn.Conv2d(2 * channels + 1, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, decoder: torch.Tensor, skip: torch.Tensor, l_pos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            decoder: D', (B, C, H, W) text-modulated decoder feature.
            skip: E, (B, C, H, W) projected encoder skip feature.
            l_pos: L+, (B, 1, H, W) positive illumination.

        Returns:
            (B, C, H, W)
        """
        base = self.base(decoder)
        detail = skip - avg_pool3x3(skip)
        consistency = (self.base_proj(base) * self.detail_proj(detail)).sum(1, keepdim=True)
        weighted = torch.sigmoid(self.delta * consistency) * detail
        gate = torch.sigmoid(self.gate(torch.cat([base, weighted, l_pos], dim=1)))
        return base + gate * weighted
