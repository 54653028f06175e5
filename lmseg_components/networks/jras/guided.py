"""Retrieval-guided segmentation (J-RAS): the query image plus a soft blend of the top-k retrieved image-mask
pairs, fused by input concatenation into a segmentation backbone (MONAI BasicUNet or a SegFormer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from lmseg_components.arguments import require_bool

__all__ = ["blend_guides", "SegFormer2D", "GuidedSegmenter", "SEGMENTER_BACKBONES"]

SEGMENTER_BACKBONES = ("unet", "segformer")


def blend_guides(
    similarities: torch.Tensor,
    guide_images: torch.Tensor,
    guide_labels: torch.Tensor,
    num_classes: int,
    temperature: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend k guides by ``softmax(similarity / temperature)``.

    Masks are blended **one-hot**: a pixel labelled 1 in one guide and 3 in another becomes 0.5 / 0.5 on
    channels 1 and 3, never the averaged integer label 2.

    Args:
        similarities: (B, k) retrieval scores.
        guide_images: (B, k, C, H, W).
        guide_labels: (B, k, 1, H, W) integer labels in [0, num_classes).
        num_classes: K, classes including background.
        temperature: softmax temperature.

    Returns:
        blended image (B, C, H, W) and blended soft one-hot mask (B, K, H, W) whose channels sum to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    b, k = similarities.shape
    if guide_images.shape[:2] != (b, k) or guide_labels.shape[:3] != (b, k, 1):
        raise ValueError(
            f"guide_images (B, k, C, H, W) and guide_labels (B, k, 1, H, W) must match similarities {(b, k)}, "
            f"got {tuple(guide_images.shape)} and {tuple(guide_labels.shape)}."
        )
    weights = torch.softmax(similarities / temperature, dim=1)
    onehot = F.one_hot(guide_labels[:, :, 0].long(), num_classes).permute(0, 1, 4, 2, 3).to(guide_images.dtype)
    w = weights[:, :, None, None, None].to(guide_images.dtype)
    return (w * guide_images).sum(1), (w * onehot).sum(1)


class SegFormer2D(nn.Module):
    """A SegFormer (``transformers``, random init) whose 1/4-resolution logits are upsampled to the input size.

    Args:
        in_channels: input channels.
        out_channels: classes.
        hidden_sizes: the four encoder widths (small defaults suit CPU training; MiT-b0 is 32, 64, 160, 256).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        config = SegformerConfig(
            num_channels=in_channels,
            num_labels=out_channels,
            hidden_sizes=list(hidden_sizes),
            depths=[2, 2, 2, 2],
            num_attention_heads=[1, 2, 4, 8],
            decoder_hidden_size=max(hidden_sizes),
        )
        self.model = SegformerForSemanticSegmentation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class GuidedSegmenter(nn.Module):
    """A 2D segmenter that optionally sees retrieved guidance.

    With ``use_retrieval`` the backbone's first layer is widened to ``2 * in_channels + num_classes`` and receives
    ``[query, blended guide image, blended one-hot guide mask]`` concatenated on channels (build it with
    :meth:`guided_input`); without it, the same backbone sees the query alone (the comparison J-RAS reports).
    Taking one tensor keeps the network a plain segmentation network: ``verify_net_in_out`` and TorchScript
    export see one input, and retrieval stays a separate step.

    Args:
        in_channels: image channels C.
        num_classes: K, output classes including background.
        backbone: ``unet`` (MONAI BasicUNet) or ``segformer``.
        features: BasicUNet widths (six values).
        use_retrieval: expect the guides concatenated to the query.

    Forward:
        (B, 2C + K, H, W) with retrieval, (B, C, H, W) without -> logits (B, K, H, W).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        backbone: str = "unet",
        features: tuple[int, ...] = (16, 16, 32, 64, 128, 16),
        use_retrieval: bool = True,
    ):
        super().__init__()
        if backbone not in SEGMENTER_BACKBONES:
            raise ValueError(f"backbone must be one of {SEGMENTER_BACKBONES}, got {backbone!r}.")
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"in_channels must be >= 1 and num_classes >= 2, got {in_channels}, {num_classes}.")
        require_bool("use_retrieval", use_retrieval)
        self.use_retrieval = use_retrieval
        self.in_channels, self.num_classes = in_channels, num_classes
        self.input_channels = in_channels * 2 + num_classes if use_retrieval else in_channels
        if backbone == "unet":
            self.backbone: nn.Module = BasicUNet(2, self.input_channels, num_classes, features=features)
        else:
            self.backbone = SegFormer2D(self.input_channels, num_classes)

    def guided_input(
        self, image: torch.Tensor, guide_image: torch.Tensor | None = None, guide_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The forward input: ``image`` (B, C, H, W) alone, or with retrieval concatenated with ``guide_image``
        (B, C, H, W) and ``guide_mask`` (B, K, H, W) from :func:`blend_guides`."""
        if not self.use_retrieval:
            return image
        if guide_image is None or guide_mask is None:
            raise ValueError("this segmenter uses retrieval: pass guide_image and guide_mask (see blend_guides).")
        if guide_image.shape[1] != self.in_channels or guide_mask.shape[1] != self.num_classes:
            raise ValueError(
                f"guide_image must have {self.in_channels} channels and guide_mask {self.num_classes}, got "
                f"{guide_image.shape[1]} and {guide_mask.shape[1]}."
            )
        return torch.cat([image, guide_image, guide_mask], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.input_channels:
            raise ValueError(
                f"expected {self.input_channels} input channels ("
                + ("query + guide image + one-hot guide mask" if self.use_retrieval else "the query")
                + f"), got {x.shape[1]}."
            )
        return self.backbone(x)
