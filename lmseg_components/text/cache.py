"""On-disk cache of frozen text-encoder outputs, so a frozen encoder runs once per unique text."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from lmseg_components.text.base import TextEncoder, TextFeatures

__all__ = ["TextFeatureCache"]


class TextFeatureCache:
    """Memoise ``encoder.encode`` per text, in memory and (optionally) on disk.

    Entries live in ``<cache_dir>/<sha256(encoder.identity)[:16]>/<sha256(text)>.pt`` as plain tensors
    (``torch.load(weights_only=True)`` compatible), written atomically, so several processes can share a
    cache directory. A different encoder, context length or set of weights never sees another's entries.

    Args:
        encoder: the frozen encoder.
        cache_dir: directory for the on-disk cache; None keeps the cache in memory only.
        batch_size: texts encoded per forward pass for the misses of one call.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path | None = None, batch_size: int = 64):
        self.encoder = encoder
        self.batch_size = batch_size
        self.directory = None
        if cache_dir is not None:
            key = hashlib.sha256(encoder.identity.encode()).hexdigest()[:16]
            self.directory = Path(cache_dir) / key
            self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.encoder_calls = 0

    def _path(self, text: str) -> Path:
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()}.pt"

    def _lookup(self, text: str) -> dict[str, torch.Tensor] | None:
        if text in self._memory:
            return self._memory[text]
        if self.directory is not None and self._path(text).is_file():
            entry = torch.load(self._path(text), map_location="cpu", weights_only=True)
            self._memory[text] = entry
            return entry
        return None

    def _store(self, text: str, entry: dict[str, torch.Tensor]) -> None:
        self._memory[text] = entry
        if self.directory is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        torch.save(entry, tmp)
        os.replace(tmp, self._path(text))

    def get(self, texts: Sequence[str]) -> TextFeatures:
        """Features of ``texts`` (B texts) as CPU tensors: tokens (B, L, D), mask (B, L), pooled (B, P)."""
        texts = list(texts)
        missing = sorted({t for t in texts if self._lookup(t) is None})
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            features = self.encoder.encode(chunk)
            self.encoder_calls += 1
            for i, text in enumerate(chunk):
                self._store(
                    text,
                    {
                        "tokens": features.tokens[i].float().cpu().contiguous(),
                        "mask": features.mask[i].cpu().contiguous(),
                        "pooled": features.pooled[i].float().cpu().contiguous(),
                    },
                )
        entries = [self._lookup(t) for t in texts]
        return TextFeatures(*(torch.stack([e[k] for e in entries]) for k in ("tokens", "mask", "pooled")))
