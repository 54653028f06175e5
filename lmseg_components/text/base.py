"""The interface every frozen text encoder implements: token features, attention mask and a pooled vector."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lmseg_components.fingerprint import weights_fingerprint

__all__ = ["TextFeatures", "TextEncoder"]


@dataclass
class TextFeatures:
    """Output of a text encoder for a batch of B texts.

    Attributes:
        tokens: (B, L, D) token features; padded positions are exactly zero.
        mask: (B, L) bool, True at real tokens.
        pooled: (B, P) one vector per text.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


class TextEncoder(nn.Module, ABC):
    """A frozen text encoder. Subclasses build their model, call :meth:`freeze` and implement
    :meth:`tokenize` and :meth:`encode_tokens`.

    Attributes:
        name: what the encoder was built from (hub id, local path or model name).
        pretrained: pretrained tag or weights path, or None for random weights.
        context_length: L, the fixed token length every text is padded or truncated to.
        token_dim: D, the width of the token features.
        pooled_dim: P, the width of the pooled vector.
    """

    name: str
    pretrained: str | None
    context_length: int
    token_dim: int
    pooled_dim: int

    def freeze(self) -> None:
        """Stop gradients into the encoder and put it in eval mode for good."""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> TextEncoder:
        """A frozen encoder stays in eval mode (dropout off) whatever the surrounding module does."""
        return super().train(False)

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize to ``input_ids`` and ``attention_mask``, both (B, L) int64, padded/truncated to L."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """The number of tokens of ``text``, special tokens included, before truncation to L."""

    def text_read(self, text: str) -> str:
        """What the encoder reads of ``text``: ``text`` itself when it fits in L tokens, else its longest word
        prefix that does (the encoder truncates the rest)."""
        if self.count_tokens(text) <= self.context_length:
            return text
        words = text.split()
        fits, too_long = 0, len(words)  # words[:fits] fit, words[:too_long] do not
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            if self.count_tokens(" ".join(words[:middle])) <= self.context_length:
                fits = middle
            else:
                too_long = middle
        return " ".join(words[:fits])

    @abstractmethod
    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (tokens (B, L, D), pooled (B, P)) for tokenized input."""

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        tokens, pooled = self.encode_tokens(input_ids, attention_mask)
        mask = attention_mask.bool()
        return TextFeatures(tokens=tokens * mask.unsqueeze(-1).to(tokens.dtype), mask=mask, pooled=pooled)

    def encode(self, texts: str | Sequence[str]) -> TextFeatures:
        """Tokenize and encode raw texts on the encoder's device."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"texts must be strings, got {[type(t).__name__ for t in texts]}.")
        device = next(self.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(list(texts)).items()}
        return self(batch["input_ids"], batch["attention_mask"])

    @property
    def identity(self) -> str:
        """A string naming the encoder class, context length and exact weights; keys the on-disk feature cache.

        It does not depend on where the weights were loaded from, so a cache is valid across machines.
        """
        if not hasattr(self, "_identity"):
            weights = weights_fingerprint(self)
            self._identity = f"{type(self).__name__}|L={self.context_length}|weights={weights}"
        return self._identity
