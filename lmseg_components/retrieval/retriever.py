"""The J-RAS retriever: an image backbone plus a projection head giving L2-normalised embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks import nets
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["Retriever", "RETRIEVER_BACKBONES"]

RETRIEVER_BACKBONES = ("resnet10", "resnet18", "resnet34")


class Retriever(nn.Module):
    """Image -> embedding for retrieval: a MONAI ResNet trunk (random init, or weights loaded by the caller),
    average pooling to a ``pool_grid`` grid, then ``Linear(F * pool_grid ** spatial_dims, hidden) -> ReLU ->
    Linear(hidden, embed_dim)`` and L2 normalisation.

    Global pooling (``pool_grid=1``) makes the embedding blind to where the anatomy lies in the image; masks that
    overlap are alike in position and size, so a segmentation-aware retriever keeps a coarse grid (e.g. 4 x 4).

    Train it with MONAI's ``ContrastiveLoss`` (NT-Xent / InfoNCE) on positive pairs: two augmentations of one
    image, or adjacent slices of one case.

    Args:
        in_channels: image channels.
        backbone: ``resnet10``, ``resnet18`` or ``resnet34`` (``monai.networks.nets``).
        spatial_dims: 2 for slices, 3 for volumes.
        hidden_dim: projection head hidden width.
        embed_dim: D, the embedding width.
        widen_factor: ResNet width multiplier (0.25 gives a light CPU trunk).
        pool_grid: cells per spatial dimension of the pooled trunk features (1: global average pooling).

    Forward:
        (B, in_channels, *spatial) -> (B, embed_dim), unit norm.
    """

    def __init__(
        self,
        in_channels: int = 1,
        backbone: str = "resnet10",
        spatial_dims: int = 2,
        hidden_dim: int = 256,
        embed_dim: int = 128,
        widen_factor: float = 1.0,
        pool_grid: int = 1,
    ):
        super().__init__()
        if backbone not in RETRIEVER_BACKBONES:
            raise ValueError(f"backbone must be one of {RETRIEVER_BACKBONES}, got {backbone!r}.")
        if min(in_channels, hidden_dim, embed_dim, pool_grid) < 1:
            raise ValueError("in_channels, hidden_dim, embed_dim and pool_grid must be positive.")
        self.trunk = getattr(nets, backbone)(
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            feed_forward=False,
            shortcut_type="B",
            widen_factor=widen_factor,
        )
        self.trunk.avgpool = Pool[Pool.ADAPTIVEAVG, spatial_dims](pool_grid)  # MONAI's ResNet flattens its output
        with torch.no_grad():
            features = self.trunk(torch.zeros(2, in_channels, *([32] * spatial_dims))).shape[1]
        self.head = nn.Sequential(
            nn.Linear(features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, embed_dim)
        )
        self.embed_dim = embed_dim

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.trunk(image)), dim=1)
