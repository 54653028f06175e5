"""Frozen open_clip text towers: a model name plus a pretrained tag, a local checkpoint path, or None."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmseg_components.open_clip_weights import create_open_clip
from lmseg_components.text.base import TextEncoder

__all__ = ["OpenCLIPTextEncoder"]


class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an open_clip model, with per-token features.

    Args:
        model_name: an open_clip model name (``ViT-B-32``, ``ViT-B-16-quickgelu``, ...) or ``hf-hub:<repo>``.
        pretrained: a pretrained tag (``openai``, ``laion2b_s34b_b79k``), a local checkpoint file
            (``open_clip_pytorch_model.bin`` or a state dict saved with ``torch.save``), or None for random weights.
        context_length: L; shorter than the model's own (77 for CLIP), e.g. 18 as in TIRNet. None keeps the model's.
        cache_dir: where open_clip caches downloaded weights (default: the Hugging Face cache).

    Token features are the final-layer tokens after ``ln_final`` and the text projection, so ``token_dim`` equals
    ``pooled_dim`` (the CLIP embedding width, 512 for ViT-B/32); the pooled vector is the end-of-text token.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        context_length: int | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__()
        import open_clip

        clip = create_open_clip(model_name, pretrained, cache_dir, "text_pretrained")
        if hasattr(clip, "text"):
            raise ValueError(
                f"{model_name} has a custom text tower (e.g. a Hugging Face BERT); load that tower with "
                "create_text_encoder('hf:<id or dir>') instead."
            )
        clip.visual = nn.Identity()
        self.clip = clip
        self._tokenizer = open_clip.get_tokenizer(model_name)
        max_length = int(clip.positional_embedding.shape[0])
        length = max_length if context_length is None else int(context_length)
        if not 2 <= length <= max_length:
            raise ValueError(f"context_length must be between 2 and {max_length} for {model_name}, got {length}.")
        self.name = model_name
        self.pretrained = pretrained
        self.context_length = length
        proj = clip.text_projection
        self.pooled_dim = self.token_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self.freeze()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = self._tokenizer(list(texts), context_length=self.context_length).long()
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def count_tokens(self, text: str) -> int:
        # open_clip's tokenizer always pads or cuts to a context length: one longer than any text holds them all
        return int((self._tokenizer([text], context_length=len(text.encode()) + 2) != 0).sum())

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip, length = self.clip, input_ids.shape[1]
        x = clip.token_embedding(input_ids) + clip.positional_embedding[:length]
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
        proj = clip.text_projection
        tokens = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), input_ids.argmax(dim=-1)]
        return tokens, pooled
