"""MONAI dictionary transforms for the ``text`` key: tokenize it, or encode it with a frozen encoder."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

from monai.config import KeysCollection
from monai.transforms import MapTransform

from lmseg_components.text.base import TextEncoder
from lmseg_components.text.cache import TextFeatureCache

__all__ = ["TokenizeTextd", "EncodeTextd"]


def _texts(value, key: Hashable) -> tuple[list[str], bool]:
    """(texts, single): a string gives one text, a list/tuple of strings gives several (e.g. organ prompts)."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value), False
    raise TypeError(f"key {key!r} must hold a string or a non-empty list of strings, got {type(value).__name__}.")


class TokenizeTextd(MapTransform):
    """Tokenize a text key with an encoder's tokenizer.

    Writes ``<key>_ids`` and ``<key>_attention_mask``: (L,) int64 for a string, (N, L) for a list of N strings.
    """

    def __init__(self, keys: KeysCollection, encoder: TextEncoder, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.encoder = encoder

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            texts, single = _texts(d[key], key)
            out = self.encoder.tokenize(texts)
            d[f"{key}_ids"] = out["input_ids"][0] if single else out["input_ids"]
            d[f"{key}_attention_mask"] = out["attention_mask"][0] if single else out["attention_mask"]
        return d


class EncodeTextd(MapTransform):
    """Encode a text key with a frozen encoder, through a :class:`TextFeatureCache`.

    Writes ``output_key`` (default ``<key>_features``): token features (L, D) float32 for a string, (N, L, D) for
    a list of N strings, with padded positions exactly zero; and ``<output_key>_pooled``: (P,) or (N, P).

    Args:
        keys: the text key(s), usually ``text``.
        encoder: the frozen text encoder (build it with ``create_text_encoder``).
        cache_dir: on-disk cache directory for the features (None: memory only).
        output_key: where to write the features; only with a single key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        encoder: TextEncoder,
        cache_dir: str | Path | None = None,
        output_key: str | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError("output_key can only be given with a single text key.")
        self.cache = TextFeatureCache(encoder, cache_dir)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            texts, single = _texts(d[key], key)
            features = self.cache.get(texts)
            out = self.output_key or f"{key}_features"
            d[out] = features.tokens[0] if single else features.tokens
            d[f"{out}_pooled"] = features.pooled[0] if single else features.pooled
        return d
