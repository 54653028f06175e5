"""Attention helpers shared by the text-conditioned blocks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["masked_attention", "masked_mean", "token_mask"]


def token_mask(tokens: torch.Tensor) -> torch.Tensor:
    """Valid tokens (..., L) of frozen-encoder features (..., L, D) whose padding is all zero
    (the ``EncodeTextd`` convention)."""
    return tokens.abs().amax(-1) > 0


def masked_attention(
    attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """``attn(query, key, key)`` with ``valid`` (B, S) marking usable keys; a row without any valid key (an
    empty text) attends to all keys (all zero) instead of producing NaN."""
    mask = None
    if valid is not None:
        mask = ~(valid | ~valid.any(-1, keepdim=True))
    return attn(query, key, key, key_padding_mask=mask, need_weights=False)[0]


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens`` (..., L, C) over the valid positions of ``valid`` (..., L): (..., C); zero where no
    token is valid."""
    weights = valid.to(tokens.dtype)[..., None]
    return (tokens * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)
