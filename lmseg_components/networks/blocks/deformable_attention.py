"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch: sampling with ``grid_sample``, so it runs
on CPU and GPU without a custom CUDA op."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDeformAttn", "ms_deform_attn_core", "reference_points"]


def ms_deform_attn_core(
    values: Sequence[torch.Tensor], sampling_locations: torch.Tensor, attention_weights: torch.Tensor
) -> torch.Tensor:
    """Weighted sum of bilinear samples (zero padding, ``align_corners=False``) from several feature levels.

    Args:
        values: per level l, (B, M, D, H_l, W_l) — M heads of width D.
        sampling_locations: (B, Q, M, L, P, 2) normalised (x, y) in [0, 1].
        attention_weights: (B, Q, M, L, P), normalised over L * P.

    Returns:
        (B, Q, M * D).
    """
    b, q, m, n_levels, n_points, _ = sampling_locations.shape
    if len(values) != n_levels:
        raise ValueError(f"got {len(values)} value levels for sampling locations over {n_levels} levels.")
    grids = 2 * sampling_locations - 1
    out = 0
    for level, value in enumerate(values):
        d = value.shape[2]
        grid = grids[:, :, :, level].permute(0, 2, 1, 3, 4).reshape(b * m, q, n_points, 2)
        sampled = F.grid_sample(
            value.reshape(b * m, d, *value.shape[-2:]), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B * M, D, Q, P)
        weights = attention_weights[:, :, :, level].permute(0, 2, 1, 3).reshape(b * m, 1, q, n_points)
        out = out + (sampled * weights).sum(-1)
    return out.reshape(b, m, -1, q).permute(0, 3, 1, 2).reshape(b, q, -1)


def reference_points(shapes: Sequence[tuple[int, int]], device: torch.device | None = None) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1] as (x, y): (sum H_l W_l, 2)."""
    points = []
    for h, w in shapes:
        y, x = torch.meshgrid(
            (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h,
            (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w,
            indexing="ij",
        )
        points.append(torch.stack([x.flatten(), y.flatten()], -1))
    return torch.cat(points, 0)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query attends to ``n_points`` learned offsets around its
    reference point on each of ``n_levels`` feature maps.

    Args:
        dim: C, the feature width (divisible by ``n_heads``).
        n_levels: L.
        n_heads: M.
        n_points: P sampling points per head and level.

    Forward:
        ``query`` (B, Q, C), ``reference`` (B or 1, Q, 2) normalised (x, y), ``value`` (B, sum H_l W_l, C) the
        flattened levels, ``shapes`` [(H_l, W_l)] -> (B, Q, C).
    """

    def __init__(self, dim: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads}).")
        self.dim, self.n_levels, self.n_heads, self.n_points = dim, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(dim, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(dim, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on a ring of directions, one per head, growing with
        the point index; uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * torch.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor, shapes: Sequence[tuple[int, int]]
    ) -> torch.Tensor:
        if len(shapes) != self.n_levels:
            raise ValueError(f"expected {self.n_levels} levels, got shapes {list(shapes)}.")
        if value.shape[1] != sum(h * w for h, w in shapes):
            raise ValueError(f"value has {value.shape[1]} tokens but the shapes {list(shapes)} give another count.")
        b, q, _ = query.shape
        m, d = self.n_heads, self.dim // self.n_heads
        v = self.value_proj(value).view(b, -1, m, d)
        values, start = [], 0
        for h, w in shapes:
            values.append(v[:, start : start + h * w].permute(0, 2, 3, 1).reshape(b, m, d, h, w))
            start += h * w
        offsets = self.sampling_offsets(query).view(b, q, m, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(b, q, m, self.n_levels * self.n_points).softmax(-1)
        weights = weights.view(b, q, m, self.n_levels, self.n_points)
        normaliser = torch.tensor([(w, h) for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference[:, :, None, None, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_core(values, locations, weights))
