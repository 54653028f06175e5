"""RTMB: Retinex-inspired Text Modulation Block (TIRNet)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmseg_components.networks.blocks.pooling import avg_pool3x3

__all__ = ["RTMB"]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class RTMB(nn.Module):
    """Modulate a feature map with text as "illumination".

    With ``A = cos(F, Linear(t)) / tau`` the per-pixel text similarity:
    ``L+ = sigmoid(AvgPool3x3(A))``, ``L- = sigmoid(-beta * A)`` and
    ``out = F * (1 + rho * L+) * (1 - kappa * L-) + gamma * F``.

    The scalars are constrained by reparametrisation: ``beta = softplus(b) + 1e-4`` (init 1),
    ``rho = 2 sigmoid(r)`` (init 1, range (0, 2)), ``kappa = sigmoid(k)`` (init 0.5), ``gamma = sigmoid(g)``
    (init 0.5).

    Args:
        channels: C, channels of the feature map.
        text_dim: width of the sentence vector t.
        tau: similarity temperature (0.1 in TIRNet).
    """

    def __init__(self, channels: int, text_dim: int = 512, tau: float = 0.1):
        super().__init__()
        if channels < 1 or text_dim < 1:
            raise ValueError(f"channels and text_dim must be positive, got {channels} and {text_dim}.")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}.")
        self.tau = tau
        self.text_proj = nn.Linear(text_dim, channels)
        self.beta_raw = nn.Parameter(torch.tensor(math.log(math.expm1(1.0 - 1e-4))))
        self.rho_raw = nn.Parameter(torch.tensor(_logit(0.5)))
        self.kappa_raw = nn.Parameter(torch.tensor(_logit(0.5)))
        self.gamma_raw = nn.Parameter(torch.tensor(_logit(0.5)))

    @property
    def beta(self) -> torch.Tensor:
        return F.softplus(self.beta_raw) + 1e-4

    @property
    def rho(self) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.rho_raw)

    @property
    def kappa(self) -> torch.Tensor:
        return torch.sigmoid(self.kappa_raw)

    @property
    def gamma(self) -> torch.Tensor:
        return torch.sigmoid(self.gamma_raw)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, C, H, W) feature map.
            text: (B, text_dim) sentence vector.

        Returns:
            out (B, C, H, W), similarity A (B, 1, H, W), positive illumination L+ (B, 1, H, W),
            negative illumination L- (B, 1, H, W).
        """
        t_hat = self.text_proj(text)
        # cosine similarity over channels; ~3x faster on CPU than F.cosine_similarity with broadcasting
        dot = torch.einsum("bchw,bc->bhw", x, t_hat)
        norms = (x * x).sum(1).clamp_min(1e-12).sqrt() * (t_hat * t_hat).sum(1).sqrt()[:, None, None]
        sim = (dot / norms.clamp_min(1e-6)).unsqueeze(1) / self.tau
        l_pos = torch.sigmoid(avg_pool3x3(sim))
        l_neg = torch.sigmoid(-self.beta * sim)
        # the per-pixel gain is formed on (B, 1, H, W) maps, then applied to the C channels in one product
        out = x * ((1 + self.rho * l_pos) * (1 - self.kappa * l_neg) + self.gamma)
        return out, sim, l_pos, l_neg
