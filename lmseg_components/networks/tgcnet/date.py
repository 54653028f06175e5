"""TGC-Net's Domain-Augmented Text Encoder head: the auxiliary prompt's tokens query the primary prompt's
tokens (cross-attention, residual) on top of a frozen text tower's features."""

from __future__ import annotations

import torch
from torch import nn

from lmseg_components.networks.blocks.attention import masked_attention, masked_mean, token_mask

__all__ = ["DATE", "TEXT_MODES"]

TEXT_MODES = ("both", "primary", "auxiliary")


class DATE(nn.Module):
    """Project frozen text features to ``dim`` and fuse the primary (report) and auxiliary (domain knowledge)
    prompts.

    Args:
        text_dim: width of the frozen encoder's token features.
        dim: output width.
        n_heads: attention heads.
        mode: ``both`` (auxiliary queries attend to primary keys/values, residual), ``primary`` or ``auxiliary``
            (one prompt only: the ablations).

    Forward:
        ``primary`` (B, P, L, text_dim) or (B, L, text_dim) token features (padding all zero), ``auxiliary`` the
        same shape or None (falls back to the primary prompt) -> tokens (B, P, L, dim), valid mask (B, P, L)
        and one embedding per prompt (B, P, dim) (mean over valid tokens).
    """

    def __init__(self, text_dim: int, dim: int = 256, n_heads: int = 8, mode: str = "both"):
        super().__init__()
        if mode not in TEXT_MODES:
            raise ValueError(f"mode must be one of {TEXT_MODES}, got {mode!r}.")
        self.mode, self.text_dim = mode, text_dim
        self.proj = nn.Linear(text_dim, dim)
        self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(
        self, primary: torch.Tensor, auxiliary: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if primary.ndim == 3:
            primary = primary[:, None]
            auxiliary = auxiliary[:, None] if auxiliary is not None and auxiliary.ndim == 3 else auxiliary
        if primary.ndim != 4 or primary.shape[-1] != self.text_dim:
            raise ValueError(f"text features must be (B, [P,] L, {self.text_dim}), got {tuple(primary.shape)}.")
        if auxiliary is None or self.mode == "primary":
            auxiliary = primary
        if auxiliary.shape[:2] != primary.shape[:2] or auxiliary.shape[-1] != self.text_dim:
            raise ValueError(f"auxiliary {tuple(auxiliary.shape)} must match primary {tuple(primary.shape)}.")
        b, p = primary.shape[:2]
        if self.mode == "primary":
            tokens, valid = self.proj(primary), token_mask(primary)
        elif self.mode == "auxiliary":
            tokens, valid = self.proj(auxiliary), token_mask(auxiliary)
        else:
            q, kv = self.proj(auxiliary).flatten(0, 1), self.proj(primary).flatten(0, 1)
            kv_valid = token_mask(primary).flatten(0, 1)
            tokens = (q + masked_attention(self.cross, self.norm_q(q), self.norm_kv(kv), kv_valid)).unflatten(0, (b, p))
            valid = token_mask(auxiliary)
        tokens = tokens + self.ffn(self.norm_ffn(tokens))
        return tokens, valid, masked_mean(tokens, valid)
