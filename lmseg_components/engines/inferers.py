"""Slice-by-slice inference of a 2D text-guided network over 3D volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SliceInferer

__all__ = ["TextSliceInferer"]


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
