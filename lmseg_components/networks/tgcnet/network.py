"""TGC-Net: frozen CLIP ViT + trainable CNN (SSE), domain-augmented text (DATE), gated vision-language
calibration (VLCM) and a cost-aggregating decoder; one logit map per prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmseg_components.networks.blocks.attention import masked_mean
from lmseg_components.networks.tgcnet.cost_decoder import CostAggregationDecoder
from lmseg_components.networks.tgcnet.date import DATE
from lmseg_components.networks.tgcnet.sse import SSE, CLIPImageTower
from lmseg_components.networks.tgcnet.vlcm import VLCM

__all__ = ["TGCNet", "count_parameters"]


def count_parameters(module: nn.Module) -> dict[str, int]:
    """``{"trainable": n, "frozen": m}`` parameter counts."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


class TGCNet(nn.Module):
    """Text-guided CLIP segmentation network.

    The frozen text tower runs outside the network (``EncodeTextd`` caches its token features); the CLIP image
    tower runs inside it (``clip_model`` / ``clip_pretrained``: a tag such as ``openai``, a local checkpoint file,
    or None for random weights), frozen unless ``clip_trainable_blocks`` fine-tunes its last blocks.

    Data path: SSE gives the hybrid pyramid (strides 8, 16, 32); VLCM calibrates the stride-32 level (the cost
    level, the ViT's patch-grid resolution) against the DATE text tokens; the decoder builds the cost volume there
    and upsamples it with ``decoder_guidance`` at strides 16 and 8.

    Args:
        in_channels: image channels.
        text_dim: width of the frozen text encoder's token features.
        clip_model, clip_pretrained, clip_indices, clip_cache_dir, clip_image_size: the image tower (see
            :class:`~lmseg_components.networks.tgcnet.sse.CLIPImageTower`); ignored with ``use_vit=False``.
        clip_trainable_blocks: ViT fine-tuning ablation: 0 frozen (the method), N the last N blocks, -1 all
            (``CLIPImageTower(trainable_blocks=...)``); their learning rate is set by :meth:`parameter_groups`.
        clip_dtype: the frozen tower's dtype, ``float16`` / ``bfloat16`` or None (float32); the bundles take
            ``float16`` on a GPU (``CLIPImageTower(dtype=...)``).
        dim: width of the hybrid pyramid, text tokens and calibration.
        cnn_width: CNN branch stem width.
        n_heads, n_points, n_deform_layers: SSE deformable attention.
        n_context: VLCM context tokens.
        cost_dim: decoder width.
        use_vit, use_cnn: SSE ablations. text_mode: DATE ablation (``both``, ``primary``, ``auxiliary``).
        calibration: VLCM ablation (``vlcm`` or ``bidirectional``).
        decoder_guidance: the decoder's stride-8/16 guidance: ``hybrid`` (the fused pyramid levels, the method) or
            ``cnn`` (the CNN levels before fusion, the ablation; needs ``use_cnn``).

    Forward:
        ``image`` (B, C, S, S) in [0, 1], S divisible by 32 (the CNN resolution); ``text`` primary-prompt token
        features (B, [P,] L, text_dim) (padding all zero); ``aux_text`` auxiliary-prompt features of the same
        shape or None (falls back to the primary); ``text=None`` is the empty description -> logits (B, P, S, S).
        Text features with batch size 1 apply to every image of the batch (e.g. the organ prompts of one volume
        for a batch of its slices).
    """

    def __init__(
        self,
        in_channels: int = 1,
        text_dim: int = 384,
        clip_model: str = "ViT-B-16-quickgelu",
        clip_pretrained: str | None = None,
        clip_indices: Sequence[int] | None = None,
        clip_cache_dir: str | None = None,
        clip_image_size: int | None = None,
        clip_trainable_blocks: int = 0,
        clip_dtype: str | None = None,
        dim: int = 256,
        cnn_width: int = 32,
        n_heads: int = 8,
        n_points: int = 4,
        n_deform_layers: int = 1,
        n_context: int = 8,
        cost_dim: int = 64,
        use_vit: bool = True,
        use_cnn: bool = True,
        text_mode: str = "both",
        calibration: str = "vlcm",
        decoder_guidance: str = "hybrid",
    ):
        super().__init__()
        vit = (
            CLIPImageTower(
                clip_model,
                clip_pretrained,
                clip_indices,
                clip_cache_dir,
                clip_image_size,
                trainable_blocks=clip_trainable_blocks,
                dtype=clip_dtype,
            )
            if use_vit
            else None
        )
        self.sse = SSE(
            vit,
            in_channels,
            dim,
            cnn_width,
            n_heads,
            n_points,
            n_deform_layers,
            use_vit=use_vit,
            use_cnn=use_cnn,
            guidance=decoder_guidance,
        )
        self.date = DATE(text_dim, dim, n_heads, text_mode)
        self.vlcm = VLCM(dim, n_context, n_heads, calibration)
        self.text_out = nn.Linear(dim, dim)
        self.decoder = CostAggregationDecoder(dim, cost_dim, max(1, n_heads // 2))

    def parameter_groups(self, clip_learning_rate: float) -> list[dict]:
        """Optimizer parameter groups: every trainable parameter outside the CLIP image tower (the optimizer's
        own learning rate), then the tower's fine-tuned blocks at ``clip_learning_rate`` (an empty group when the
        tower is frozen or off, so that the optimizer has the same groups in every setting)."""
        vit = self.sse.vit
        clip = [p for p in vit.parameters() if p.requires_grad] if vit is not None else []
        tower = {id(p) for p in clip}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in tower]
        return [{"params": rest}, {"params": clip, "lr": clip_learning_rate}]

    def forward(
        self, image: torch.Tensor, text: torch.Tensor | None = None, aux_text: torch.Tensor | None = None
    ) -> torch.Tensor:
        if text is None:  # no description: one all-padding token (what EncodeTextd gives an empty text)
            text = image.new_zeros(image.shape[0], 1, self.date.text_dim)
        text, aux_text = (_broadcast_batch(t, image.shape[0]) for t in (text, aux_text))
        pyramid, guidance = self.sse(image)
        tokens, valid, _ = self.date(text, aux_text)  # (B, P, L, C), (B, P, L)
        b, p, length, c = tokens.shape
        coarse = pyramid[-1]
        h, w = coarse.shape[-2:]
        visual, text_tokens = self.vlcm(
            coarse.flatten(2).transpose(1, 2), tokens.reshape(b, p * length, c), valid.reshape(b, -1)
        )
        visual = visual.transpose(1, 2).reshape(b, c, h, w)
        text_tokens = text_tokens.view(b, p, length, c)
        embedding = self.text_out(masked_mean(text_tokens, valid))  # (B, P, C)
        return self.decoder(visual, embedding, guidance[::-1], image.shape[-2:])


def _broadcast_batch(features: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Expand text features of batch size 1 to ``batch`` images; any other batch size must match."""
    if features is None or features.shape[0] == batch:
        return features
    if features.shape[0] != 1:
        raise ValueError(f"text features have batch size {features.shape[0]}, the image batch is {batch}.")
    return features.expand(batch, *features.shape[1:])
