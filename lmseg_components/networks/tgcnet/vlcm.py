"""TGC-Net's Vision-Language Calibration Module: a gated network distils shared context tokens from the visual
and text tokens; each modality then cross-attends to that context (residual)."""

from __future__ import annotations

import torch
from torch import nn

from lmseg_components.networks.blocks.attention import masked_attention

__all__ = ["VLCM", "CALIBRATIONS"]

CALIBRATIONS = ("vlcm", "bidirectional")


class VLCM(nn.Module):
    """Calibrate visual and text tokens against each other.

    Args:
        dim: C, token width of both modalities.
        n_context: M, shared context tokens.
        n_heads: attention heads.
        mode: ``vlcm`` (gated shared context, the method) or ``bidirectional`` (plain visual<->text cross-attention,
            the ablation).

    Forward:
        ``visual`` (B, N, C), ``text`` (B, T, C), ``text_valid`` (B, T) bool -> (visual', text'), same shapes.
        With ``vlcm``: gates ``sigmoid(W x)`` weight each token, M learned queries attend to the gated tokens of
        both modalities to form the context, and each modality attends to the context.
    """

    def __init__(self, dim: int = 256, n_context: int = 8, n_heads: int = 8, mode: str = "vlcm"):
        super().__init__()
        if mode not in CALIBRATIONS:
            raise ValueError(f"mode must be one of {CALIBRATIONS}, got {mode!r}.")
        self.mode = mode
        self.norm_v, self.norm_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.visual_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.text_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        if mode == "vlcm":
            self.context = nn.Parameter(torch.randn(n_context, dim) * 0.02)
            self.gate_v, self.gate_t = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.norm_ctx, self.norm_mem = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.distil = nn.MultiheadAttention(dim, n_heads, batch_first=True)
            self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.norm_ffn = nn.LayerNorm(dim)

    def shared_context(self, visual: torch.Tensor, text: torch.Tensor, text_valid: torch.Tensor) -> torch.Tensor:
        """F_ctx (B, M, C) from the gated tokens of both modalities."""
        memory = torch.cat([torch.sigmoid(self.gate_v(visual)) * visual, torch.sigmoid(self.gate_t(text)) * text], 1)
        valid = torch.cat([torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device), text_valid], 1)
        ctx = self.context[None].expand(visual.shape[0], -1, -1)
        ctx = ctx + masked_attention(self.distil, self.norm_ctx(ctx), self.norm_mem(memory), valid)
        return ctx + self.ffn(self.norm_ffn(ctx))

    def forward(
        self, visual: torch.Tensor, text: torch.Tensor, text_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if visual.shape[-1] != text.shape[-1] or text.shape[:2] != text_valid.shape:
            raise ValueError(
                f"visual (B, N, C), text (B, T, C) and text_valid (B, T) disagree: {tuple(visual.shape)}, "
                f"{tuple(text.shape)}, {tuple(text_valid.shape)}."
            )
        v, t = self.norm_v(visual), self.norm_t(text)
        if self.mode == "bidirectional":
            return visual + masked_attention(self.visual_attn, v, t, text_valid), text + masked_attention(
                self.text_attn, t, v, None
            )
        ctx = self.shared_context(visual, text, text_valid)
        return visual + masked_attention(self.visual_attn, v, ctx, None), text + masked_attention(
            self.text_attn, t, ctx, None
        )
