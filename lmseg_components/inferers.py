"""Slice-by-slice inference of a 2D network over 3D volumes: text-guided, or retrieving its guides per slice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SliceInferer

__all__ = ["RetrievalSliceInferer", "TextSliceInferer"]


class TextSliceInferer(SliceInferer):
    """MONAI's :class:`~monai.inferers.SliceInferer` that also hands the network's extra arguments (the text
    features from ``PrepareBatchExtraInput``) to every batch of slices; MONAI 1.6 drops them.

    With ``roi_size`` equal to the in-plane size, each window is one whole slice; text features of batch size 1
    (one volume) apply to all ``sw_batch_size`` slices of a window batch (the network broadcasts them).

    Args:
        spatial_dim: the axis sliced over (0, 1, 2 for H, W, D); 2 gives axial slices of RAS volumes.
        args, kwargs: :class:`~monai.inferers.SlidingWindowInferer` options (``roi_size``, ``sw_batch_size``, ...).

    Call: ``inputs`` (1, C, H, W, D), ``network(slices, *args, **kwargs)`` -> (1, P, H, W, D).
    """

    def __init__(self, spatial_dim: int = 2, *args: Any, **kwargs: Any) -> None:
        super().__init__(spatial_dim, *args, **kwargs)

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"inputs must be a (B, C, H, W, D) volume batch, got shape {tuple(inputs.shape)}.")
        if inputs.shape[0] != 1 and (args or kwargs):
            raise ValueError(
                f"text-guided slice inference takes one volume at a time, got a batch of {inputs.shape[0]}."
            )
        return super().__call__(inputs, lambda x: network(x, *args, **kwargs))


class RetrievalSliceInferer(SliceInferer):
    """MONAI's :class:`~monai.inferers.SliceInferer` for a retrieval-augmented 2D network: every slice retrieves
    its own guides, and after a volume the network's ``last_indices`` / ``last_scores`` hold those of all its
    slices in slice order, (D, k) each, as after a 2D batch of D queries (what the panels and the results read).

    With ``roi_size`` equal to the in-plane size each window is one whole slice, so each slice is one query.

    Args:
        spatial_dim: the axis sliced over (2: the third spatial axis, ACDC's short-axis slices).
        args, kwargs: :class:`~monai.inferers.SlidingWindowInferer` options (``roi_size``, ``sw_batch_size``, ...).

    Call: ``inputs`` (1, C, H, W, D), ``network(slices)`` -> (1, K, H, W, D).
    """

    def __init__(self, spatial_dim: int = 2, *args: Any, **kwargs: Any) -> None:
        super().__init__(spatial_dim, *args, **kwargs)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim != 5 or inputs.shape[0] != 1:
            raise ValueError(f"inputs must be one (1, C, H, W, D) volume, got shape {tuple(inputs.shape)}.")
        model = getattr(network, "module", network)  # DDP
        model = getattr(model, "_orig_mod", model)  # torch.compile
        rows: list[torch.Tensor] = []
        scores: list[torch.Tensor] = []

        def run(slices: torch.Tensor) -> torch.Tensor:
            out = network(slices, *args, **kwargs)
            if model.last_indices is not None:
                rows.append(model.last_indices.cpu())
                scores.append(model.last_scores.detach().float().cpu())
            return out

        pred = super().__call__(inputs, run)
        if rows:
            model.last_indices, model.last_scores = torch.cat(rows), torch.cat(scores)
            if model.last_indices.shape[0] != inputs.shape[2 + self.spatial_dim]:
                raise RuntimeError(
                    f"{model.last_indices.shape[0]} retrievals for {inputs.shape[2 + self.spatial_dim]} slices: each "
                    "slice must be one window (roi_size equal to the in-plane size)."
                )
        return pred
