"""TGC-Net's Semantic-Structural Synergy Encoder: a frozen open_clip ViT (semantics) and a trainable light CNN
at a higher resolution (structure), fused level by level and refined by multi-scale deformable attention."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from lmseg_components.networks.blocks.deformable_attention import MSDeformAttn, reference_points
from lmseg_components.open_clip_weights import create_open_clip

__all__ = ["CLIPImageTower", "CNNBranch", "GUIDANCES", "SSE"]

STRIDES = (8, 16, 32)
GUIDANCES = ("hybrid", "cnn")
HALF_DTYPES = {None: torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CLIPImageTower(nn.Module):
    """An open_clip ViT image tower, frozen or with its last blocks fine-tuned, returning patch-token grids of
    intermediate blocks.

    Args:
        model_name: an open_clip ViT name (reference ``ViT-L-14-336-quickgelu``, small ``ViT-B-16-quickgelu``).
        pretrained: a pretrained tag (``openai``), a local checkpoint file, or None for random weights.
        indices: the blocks whose tokens are returned (default: three evenly spaced, the last included).
        cache_dir: where open_clip caches downloaded weights.
        image_size: input side other than the model's own (positional embeddings are interpolated by open_clip),
            e.g. 224 instead of 336 on a CPU.
        trainable_blocks: N, the fine-tuning ablation (the seed's Table 4): 0 freezes the tower (the method), N > 0
            trains the last N blocks up to the deepest tapped one, -1 trains all of them plus the patch, class and
            position embeddings and ``ln_pre`` (full fine-tuning). ``ln_post`` and ``proj`` (and blocks deeper than
            the last index) stay frozen in every setting: the tapped grids never pass through them.
        dtype: the frozen tower's weight and compute dtype, ``float16`` or ``bfloat16`` (half the memory and, on a
            GPU, about half the time of float32) or None (float32). The grids it returns are float32 either way.
            Only for a frozen tower (``trainable_blocks=0``).

    Checkpoints: with ``pretrained`` weights (a tag or a file), ``state_dict()`` leaves the frozen tower weights
    out (300 MB for ViT-B/16, 1.2 GB for ViT-L/14) and keeps ``<prefix>fingerprint`` instead, a SHA-256 of them;
    ``load_state_dict`` takes them from the tower built here after checking that fingerprint, and names the tower
    to provide when it differs. Trainable blocks are saved as usual. A random-init tower (``pretrained=None``)
    has no other copy of its weights: its checkpoints hold them all.

    Raises:
        ValueError: a model without a ViT image tower, block indices out of range, ``trainable_blocks`` not in
            ``[-1, deepest index + 1]``, or a ``dtype`` that is not a half type or not on a frozen tower.

    Forward:
        image (B, C, H, W) in [0, 1] (1 or 3 channels, any size; resized to the tower's input size and
        normalised with its mean/std) -> one (B, width, g, g) grid per index (g = image size / patch size).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16-quickgelu",
        pretrained: str | None = None,
        indices: Sequence[int] | None = None,
        cache_dir: str | None = None,
        image_size: int | None = None,
        trainable_blocks: int = 0,
        dtype: str | None = None,
    ):
        super().__init__()
        import open_clip

        if dtype not in HALF_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(k for k in HALF_DTYPES if k)} or None, got {dtype!r}.")
        if dtype is not None and trainable_blocks != 0:
            raise ValueError(
                f"dtype={dtype!r} is for a frozen tower; fine-tuning (trainable_blocks={trainable_blocks}) needs "
                "float32 weights: set clip_dtype to null (--clip_dtype None on the command line; amp still runs "
                "them in half precision)."
            )

        extra = {"force_image_size": image_size} if image_size else {}
        clip = create_open_clip(model_name, pretrained, cache_dir, "clip_pretrained", **extra)
        visual = clip.visual
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
            raise ValueError(f"{model_name} has no ViT image tower with forward_intermediates; use a ViT model.")
        self.visual = visual
        self.name, self.pretrained = model_name, pretrained
        self.image_size = int(visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size)
        self.width = int(visual.transformer.width)
        depth = len(visual.transformer.resblocks)
        self.indices = tuple(indices) if indices is not None else tuple(round(depth * f) - 1 for f in (1 / 3, 2 / 3, 1))
        if any(not 0 <= i < depth for i in self.indices):
            raise ValueError(f"indices must be block numbers in [0, {depth}), got {list(self.indices)}.")
        cfg = open_clip.get_model_preprocess_cfg(clip)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self._fingerprint: str | None = None
        self.dtype = torch.float32
        self.set_trainable_blocks(trainable_blocks)
        if dtype is not None:  # the fingerprint names the weights as loaded, so it is taken before the cast
            self.fingerprint()
            self.dtype = HALF_DTYPES[dtype]
            self.to(self.dtype)  # the weights and the mean/std buffers
        if pretrained is not None:  # the weights have a home of their own: checkpoints hold their fingerprint
            self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_restore_frozen_weights)

    def _frozen(self) -> dict[str, torch.Tensor]:
        """The tower's frozen weights by state-dict name (relative to this module)."""
        trainable = {name for name, p in self.visual.named_parameters() if p.requires_grad}
        return {
            f"visual.{name}": value
            for name, value in self.visual.state_dict(keep_vars=True).items()
            if name not in trainable
        }

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the frozen tower weights, names and dtypes included; computed once per freezing."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, value in sorted(self._frozen().items()):
                tensor = value.detach().cpu().contiguous()
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def set_trainable_blocks(self, trainable_blocks: int) -> None:
        """Freeze the tower, then unfreeze its last ``trainable_blocks`` blocks up to the deepest tapped one (-1: all
        of them and the embeddings); see the class docstring. The optimizer must be built after this call."""
        used = max(self.indices) + 1  # blocks the tapped grids pass through
        if self.dtype != torch.float32:
            raise ValueError(f"a {self.dtype} tower stays frozen; build it with dtype None to fine-tune it.")
        if not -1 <= trainable_blocks <= used:
            raise ValueError(
                f"trainable_blocks must be -1 (all), 0 (frozen) or at most {used} (the blocks up to the deepest "
                f"index {used - 1}), got {trainable_blocks}."
            )
        self.trainable_blocks = trainable_blocks
        self._fingerprint = None  # the frozen set changes
        n_blocks = used if trainable_blocks == -1 else trainable_blocks
        visual = self.visual
        self.requires_grad_(False)
        for block in visual.transformer.resblocks[used - n_blocks : used]:
            block.requires_grad_(True)
        if trainable_blocks == -1:
            for part in (visual.conv1, visual.ln_pre):
                part.requires_grad_(True)
            for embedding in (visual.class_embedding, visual.positional_embedding):
                embedding.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> CLIPImageTower:
        super().train(mode)
        self.visual.train(mode and self.trainable_blocks != 0)  # frozen: always in eval mode
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.trainable_blocks == 0:  # frozen: no graph (the whole call, so that torch.export can save it)
            with torch.no_grad():
                return [grid.float() for grid in self._grids(image.to(self.dtype))]
        return self._grids(image)

    def _grids(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        if x.shape[1] != 3:
            raise ValueError(f"the CLIP tower takes 1 or 3 channels, got {x.shape[1]}.")
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        out = self.visual.forward_intermediates(x, indices=list(self.indices), intermediates_only=True)
        return list(out["image_intermediates"])


FINGERPRINT_KEY = "fingerprint"


def _drop_frozen_weights(tower: CLIPImageTower, state: dict, prefix: str, local_metadata: dict) -> None:
    """``state_dict`` post-hook of a pretrained tower: its frozen weights out, their fingerprint in."""
    for name in tower._frozen():
        state.pop(prefix + name, None)
    digest = bytes.fromhex(tower.fingerprint())
    state[prefix + FINGERPRINT_KEY] = torch.frombuffer(bytearray(digest), dtype=torch.uint8)


def _restore_frozen_weights(
    tower: CLIPImageTower, state: dict, prefix: str, local_metadata, strict, missing_keys, unexpected_keys, errors
) -> None:
    """``load_state_dict`` pre-hook of a pretrained tower: a checkpoint that holds a fingerprint instead of the
    frozen weights gets them from this tower, when the fingerprints agree."""
    saved = state.pop(prefix + FINGERPRINT_KEY, None)
    if saved is None:
        return  # a checkpoint with the whole tower (random init, or saved before fingerprints)
    saved_hex = bytes(saved.to(torch.uint8).tolist()).hex()
    if saved_hex != tower.fingerprint():
        raise ValueError(
            f"the checkpoint's CLIP image tower has weight fingerprint {saved_hex[:16]}…, the tower built here "
            f"({tower.name}, pretrained={tower.pretrained!r}) has {tower.fingerprint()[:16]}…: build the network "
            "with the clip_model and clip_pretrained (the same weights file) it was trained with"
        )
    for name, value in tower._frozen().items():
        state.setdefault(prefix + name, value.detach())


class CNNBranch(nn.Module):
    """A light trainable CNN: stem (stride 4) then three stages giving strides 8, 16, 32 with widths
    ``width * (2, 4, 8)`` (MONAI ``Convolution`` + ``ResidualUnit`` blocks).

    Forward:
        (B, C, H, W) -> [(B, 2w, H/8, W/8), (B, 4w, H/16, W/16), (B, 8w, H/32, W/32)].
    """

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()

        def down(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                Convolution(2, cin, cout, strides=2, kernel_size=3, norm="batch", act="relu"),
                ResidualUnit(2, cout, cout, kernel_size=3, subunits=1, norm="batch", act="relu"),
            )

        self.stem = nn.Sequential(
            Convolution(2, in_channels, width, strides=2, kernel_size=3, norm="batch", act="relu"),
            Convolution(2, width, width, strides=2, kernel_size=3, norm="batch", act="relu"),
        )
        self.stages = nn.ModuleList([down(width, 2 * width), down(2 * width, 4 * width), down(4 * width, 8 * width)])
        self.widths = (2 * width, 4 * width, 8 * width)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, out = self.stem(image), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class _DeformLayer(nn.Module):
    """Pre-norm MSDeformAttn over all pyramid tokens plus a feed-forward block, both residual."""

    def __init__(self, dim: int, n_heads: int, n_points: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MSDeformAttn(dim, len(STRIDES), n_heads, n_points)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, reference: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, reference, h, shapes)
        return x + self.ffn(self.norm2(x))


class SSE(nn.Module):
    """Semantic-Structural Synergy Encoder.

    The ViT's intermediate grids (shallow to deep) are projected to ``dim`` and resized to the CNN's stride 8 / 16
    / 32 grids, added to the projected CNN features, and refined by ``n_deform_layers`` layers of multi-scale
    deformable attention across the three levels (with a learned level embedding): the hybrid pyramid.

    Args:
        vit: the frozen :class:`CLIPImageTower` (None when ``use_vit`` is False).
        in_channels: image channels for the CNN branch.
        dim: width of the hybrid pyramid.
        cnn_width: CNN stem width (stages 2x, 4x, 8x).
        n_heads, n_points, n_deform_layers: deformable attention settings.
        use_vit, use_cnn: ablation switches (at least one must be on).
        guidance: the decoder's high-resolution guidance: ``hybrid`` (the method: the hybrid pyramid's fused,
            deformable-refined stride-8 and stride-16 levels) or ``cnn`` (the ablation: the CNN levels at strides
            8 and 16, projected to ``dim``, before fusion; needs ``use_cnn``).

    Raises:
        ValueError: both branches off, ``use_vit`` without a tower, a tower not returning three grids, an unknown
            ``guidance``, or ``guidance="cnn"`` without the CNN.

    Forward:
        image (B, C, S, S), S divisible by 32 (the CNN resolution, e.g. 768; the ViT resizes to its own) ->
        ``pyramid`` [(B, dim, S/8, S/8), (B, dim, S/16, S/16), (B, dim, S/32, S/32)] and ``guidance``
        [(B, dim, S/8, S/8), (B, dim, S/16, S/16)] (``pyramid[:2]`` itself with ``guidance="hybrid"``).
    """

    def __init__(
        self,
        vit: CLIPImageTower | None,
        in_channels: int = 1,
        dim: int = 256,
        cnn_width: int = 32,
        n_heads: int = 8,
        n_points: int = 4,
        n_deform_layers: int = 1,
        use_vit: bool = True,
        use_cnn: bool = True,
        guidance: str = "hybrid",
    ):
        super().__init__()
        if not (use_vit or use_cnn):
            raise ValueError("SSE needs the ViT, the CNN or both (use_vit and use_cnn are both False).")
        if use_vit and vit is None:
            raise ValueError("use_vit is True but no CLIP image tower was given.")
        if guidance not in GUIDANCES:
            raise ValueError(f"guidance must be one of {GUIDANCES}, got {guidance!r}.")
        if guidance == "cnn" and not use_cnn:
            raise ValueError('guidance="cnn" takes the CNN levels, but use_cnn is False; use guidance="hybrid".')
        self.use_vit, self.use_cnn, self.guidance, self.dim = use_vit, use_cnn, guidance, dim
        self.vit = vit if use_vit else None
        if use_vit and len(vit.indices) != len(STRIDES):
            raise ValueError(f"the CLIP tower must return {len(STRIDES)} grids, it returns {len(vit.indices)}.")
        if use_vit:
            self.vit_proj = nn.ModuleList([nn.Conv2d(vit.width, dim, 1) for _ in STRIDES])
        if use_cnn:
            self.cnn = CNNBranch(in_channels, cnn_width)
            self.cnn_proj = nn.ModuleList([nn.Conv2d(w, dim, 1) for w in self.cnn.widths])
        self.level_embed = nn.Parameter(torch.zeros(len(STRIDES), dim))
        self.layers = nn.ModuleList([_DeformLayer(dim, n_heads, n_points) for _ in range(n_deform_layers)])

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        size = image.shape[-1]
        if image.shape[-2] != size or size % 32:
            raise ValueError(f"SSE needs square images with a side divisible by 32, got {tuple(image.shape[-2:])}.")
        shapes = [(size // s, size // s) for s in STRIDES]
        levels = [0.0] * len(STRIDES)
        cnn: list[torch.Tensor] = []
        if self.use_cnn:
            cnn = [proj(f) for proj, f in zip(self.cnn_proj, self.cnn(image), strict=True)]
            levels = [lv + c for lv, c in zip(levels, cnn, strict=True)]
        if self.use_vit:
            grids = self.vit(image)
            for i, (proj, grid) in enumerate(zip(self.vit_proj, grids, strict=True)):
                levels[i] = levels[i] + F.interpolate(proj(grid), size=shapes[i], mode="bilinear", align_corners=False)
        b = image.shape[0]
        tokens = torch.cat(
            [lv.flatten(2).transpose(1, 2) + self.level_embed[i] for i, lv in enumerate(levels)], dim=1
        )  # (B, sum HW, dim)
        reference = reference_points(shapes, image.device)[None]
        for layer in self.layers:
            tokens = layer(tokens, reference, shapes)
        pyramid, start = [], 0
        for h, w in shapes:
            pyramid.append(tokens[:, start : start + h * w].transpose(1, 2).reshape(b, self.dim, h, w))
            start += h * w
        return pyramid, cnn[:2] if self.guidance == "cnn" else pyramid[:2]
