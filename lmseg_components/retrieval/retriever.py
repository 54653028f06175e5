"""J-RAS retrievers: image -> L2-normalised embedding. :class:`Retriever` (a ResNet trunk plus a projection head,
learned by contrast alone) and :class:`MaskEmbeddingRetriever` (the embedding is the image's own coarse predicted
segmentation); :func:`create_retriever` builds either by name, as a J-RAS run records it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks import nets
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["MaskEmbeddingRetriever", "Retriever", "RETRIEVER_BACKBONES", "RETRIEVER_KINDS", "create_retriever"]

RETRIEVER_BACKBONES = ("resnet10", "resnet18", "resnet34")
RETRIEVER_KINDS = ("mask_embedding", "image_encoder")


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


class MaskEmbeddingRetriever(nn.Module):
    """Image -> embedding that is a coarse segmentation: a MONAI ``UNet`` predicts the K-class masks of the image,
    and their foreground probabilities, averaged on a ``pool_grid`` grid and flattened, are L2-normalised.

    The cosine similarity of two embeddings is then an overlap score of the two predicted masks (classes side by
    side, cell by cell), so nearest neighbours are the images whose masks are most alike, which is what a guide
    should be. Train :meth:`segment` with Dice + CE on the labels (``ContrastiveObjective`` adds that term for any
    retriever that has ``segment``) and the embedding with the mask-agreement contrastive loss; the segmentation
    loss of the guided segmenter reaches it through the blend weights like any retriever's.

    Args:
        in_channels: image channels.
        num_classes: K, classes including background (the embedding holds the K - 1 foreground classes).
        spatial_dims: 2 for slices, 3 for volumes.
        channels: UNet channels per level.
        strides: UNet down-sampling strides (len(channels) - 1); each image side must divide by their product.
        num_res_units: residual units per UNet block.
        pool_grid: G, cells per spatial dimension of the pooled probabilities.

    Forward:
        (B, in_channels, *spatial) -> (B, (K - 1) * G ** spatial_dims), unit norm.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 1,
        pool_grid: int = 16,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and needs a foreground class, got {num_classes}.")
        if min(in_channels, pool_grid) < 1:
            raise ValueError("in_channels and pool_grid must be positive.")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides needs len(channels) - 1 = {len(channels) - 1} values, got {len(strides)}.")
        self.net = nets.UNet(spatial_dims, in_channels, num_classes, channels, strides, num_res_units=num_res_units)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](pool_grid)
        self.num_classes = num_classes
        self.embed_dim = (num_classes - 1) * pool_grid**spatial_dims

    def segment(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, K, *spatial) logits."""
        return self.net(image)

    def embed(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, *spatial) logits -> (B, (K - 1) * G ** spatial_dims) unit-norm embedding."""
        return F.normalize(self.pool(logits.softmax(1)[:, 1:]).flatten(1), dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.embed(self.segment(image))


def create_retriever(
    kind: str,
    in_channels: int,
    num_classes: int,
    pool_grid: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    backbone: str = "resnet10",
    embed_dim: int = 128,
    widen_factor: float = 1.0,
    spatial_dims: int = 2,
) -> nn.Module:
    """The retriever of ``kind``: ``"mask_embedding"`` (:class:`MaskEmbeddingRetriever` with ``channels``) or
    ``"image_encoder"`` (:class:`Retriever`, the paper's image encoder with a projection head: ``backbone``,
    ``embed_dim``, ``widen_factor``). The kind is a value of the run record, so inference rebuilds the retriever a
    run was trained with from the record alone (the arguments of the other kind are not used).

    Raises:
        ValueError: an unknown ``kind`` (naming the choices).
    """
    if kind == "mask_embedding":
        return MaskEmbeddingRetriever(in_channels, num_classes, spatial_dims, channels, pool_grid=pool_grid)
    if kind == "image_encoder":
        return Retriever(
            in_channels, backbone, spatial_dims, embed_dim=embed_dim, widen_factor=widen_factor, pool_grid=pool_grid
        )
    raise ValueError(f"retriever_kind must be one of {list(RETRIEVER_KINDS)}, got {kind!r}.")
