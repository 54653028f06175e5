"""TIRNet: Text-as-Illumination Retinex Network for language-guided 2D segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets.basic_unet import Down, TwoConv
from torch import nn

from lmseg_components.networks.tirnet.cdcb import CDCB
from lmseg_components.networks.tirnet.rtmb import RTMB

__all__ = ["TIRNet", "TextTokenPooling"]

_ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
_NORM = ("instance", {"affine": True})


class TextTokenPooling(nn.Module):
    """Token features -> one sentence vector: ``Conv1d(text_dim, width, 3, padding=1)`` then a mean over the
    real tokens. Padded positions are recognised as all-zero token vectors (the text encoders' contract); a text
    with no token at all (the empty description) gives a zero vector.

    Both steps are linear, so the mean is taken first: the three kernel taps are applied to three shifted token
    means, which is exact and about L times cheaper than convolving every token.

    Args:
        text_dim: D, width of the token features.
        width: output width.
    """

    def __init__(self, text_dim: int, width: int = 512):
        super().__init__()
        self.conv = nn.Conv1d(text_dim, width, kernel_size=3, padding=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, width)."""
        length = tokens.shape[1]
        mask = (tokens.abs().sum(-1) > 0).to(tokens.dtype)
        count = mask.sum(1, keepdim=True)
        padded = F.pad(tokens.transpose(1, 2), (1, 1))
        # for each kernel tap k, the sum over real positions t of token t + k - 1: (B, 3 * D), tap-major
        shifted = torch.cat([(padded[:, :, k : k + length] * mask.unsqueeze(1)).sum(-1) for k in range(3)], dim=1)
        weight = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)
        out = F.linear(shifted / count.clamp_min(1.0), weight, self.conv.bias)
        return out * (count > 0).to(tokens.dtype)


class _NoModulation(nn.Module):
    """Ablation "RTMB off": features pass unchanged; the maps are placeholders the loss never sees."""

    def forward(
        self, x: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        zeros = x.new_zeros(x.shape[0], 1, x.shape[2], x.shape[3])
        return x, zeros, zeros, zeros


class _PlainFusion(nn.Module):
    """Ablation "CDCB off": a U-Net fusion, two 3x3 convolutions over [D', E]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = TwoConv(2, 2 * channels, channels, _ACT, _NORM, True, 0.0)

    def forward(self, decoder: torch.Tensor, skip: torch.Tensor, l_pos: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([decoder, skip], dim=1))


class _Stage(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, text_width: int, tau: float, rtmb: bool, cdcb: bool):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce = nn.Conv2d(in_ch, out_ch, 1)
        self.skip = nn.Conv2d(skip_ch, out_ch, 1)
        self.modulation = RTMB(out_ch, text_width, tau) if rtmb else _NoModulation()
        self.fusion = CDCB(out_ch) if cdcb else _PlainFusion(out_ch)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Conv1x1 and upsampling commute; reducing channels before upsampling is exact and 4x cheaper.
        modulated, sim, l_pos, l_neg = self.modulation(self.up(self.reduce(x)), text)
        return self.fusion(modulated, self.skip(skip), l_pos), sim, l_neg


class TIRNet(nn.Module):
    """TIRNet (Shi et al., 2026): a U-Net whose 4 decoder stages are each modulated by the text (RTMB) and
    compensated with consistent skip details (CDCB).

    The network takes *token features* of a frozen text encoder (see ``lmseg_components.text`` and the
    ``EncodeTextd`` transform), so the encoder runs once per unique text, outside the trainable graph.

    Args:
        in_channels: image channels (1 for grey radiographs, 3 as in the paper's RGB loading).
        out_channels: logit channels (1 for binary segmentation).
        features: encoder widths, five values; the paper uses (64, 128, 256, 512, 512).
            Give ``width`` instead for the paper's ratios, (w, 2w, 4w, 8w, 8w).
        width: base width; used when ``features`` is None.
        text_dim: D, width of the token features of the text encoder (512 for CLIP ViT-B/32, 384 for MiniLM).
        text_width: width of the sentence vector after the Conv1d projection (512 in the paper).
        tau: RTMB similarity temperature.
        use_rtmb, use_cdcb: ablation switches; off replaces RTMB by identity and CDCB by two 3x3 convolutions.

    Forward:
        ``image`` (B, in_channels, H, W) with H and W divisible by 16; ``text`` (B, L, text_dim) token features
        (padding all-zero), or None for the empty description. In eval mode (and in TorchScript) it returns the
        logits (B, out_channels, H, W). In training mode it returns ``(logits, sims, l_negs)``: the per-stage
        similarity maps A and negative illumination maps L- (deepest stage first; empty lists if RTMB is off)
        for the MSIS loss.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] | None = None,
        width: int = 64,
        text_dim: int = 512,
        text_width: int = 512,
        tau: float = 0.1,
        use_rtmb: bool = True,
        use_cdcb: bool = True,
    ):
        super().__init__()
        fea = tuple(features) if features is not None else (width, 2 * width, 4 * width, 8 * width, 8 * width)
        if len(fea) != 5 or min(fea) < 1:
            raise ValueError(f"features must be five positive widths, got {fea}.")
        if in_channels < 1 or out_channels < 1 or text_dim < 1:
            raise ValueError("in_channels, out_channels and text_dim must be positive.")
        self.text_dim = text_dim
        self.use_rtmb = use_rtmb
        self.text_pool = TextTokenPooling(text_dim, text_width)
        self.conv_0 = TwoConv(2, in_channels, fea[0], _ACT, _NORM, True, 0.0)
        self.downs = nn.ModuleList([Down(2, fea[i], fea[i + 1], _ACT, _NORM, True, 0.0) for i in range(4)])
        self.stages = nn.ModuleList(
            [_Stage(fea[4 - i], fea[3 - i], fea[3 - i], text_width, tau, use_rtmb, use_cdcb) for i in range(4)]
        )
        self.head = nn.Conv2d(fea[0], out_channels, 1)

    def forward_maps(
        self, image: torch.Tensor, text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits plus the per-stage A and L- maps (see class docstring)."""
        if image.dim() != 4 or image.shape[-1] % 16 != 0 or image.shape[-2] % 16 != 0:
            raise ValueError(f"image must be (B, C, H, W) with H, W divisible by 16, got {list(image.shape)}.")
        if text is None:
            text = image.new_zeros(image.shape[0], 1, self.text_dim)
        if text.dim() != 3 or text.shape[-1] != self.text_dim or text.shape[0] != image.shape[0]:
            raise ValueError(
                f"text must be (B, L, {self.text_dim}) token features for B={image.shape[0]}, got {list(text.shape)}."
            )
        sentence = self.text_pool(text)
        skips = [self.conv_0(image)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips[4]
        sims: list[torch.Tensor] = []
        l_negs: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            x, sim, l_neg = stage(x, skips[3 - i], sentence)
            if self.use_rtmb:
                sims.append(sim)
                l_negs.append(l_neg)
        return self.head(x), sims, l_negs

    def forward(self, image: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        logits, sims, l_negs = self.forward_maps(image, text)
        if not torch.jit.is_scripting():
            if self.training:
                return logits, sims, l_negs  # type: ignore[return-value]
        return logits
