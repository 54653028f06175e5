"""Pretrained open_clip weights by tag (downloaded from the model hub into a cache) or from a local file, with one
clear error when the hub cannot be reached: the bundles' paper defaults need it, their ``small.json`` does not."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lmseg_components.errors import UserInputError

__all__ = ["WeightsUnavailableError", "create_open_clip"]


class WeightsUnavailableError(UserInputError, RuntimeError):
    """Pretrained weights named by a tag could not be downloaded (no network or no access to the model hub)."""


def create_open_clip(
    model_name: str, pretrained: str | None, cache_dir: str | None, config_key: str, **kwargs
) -> nn.Module:
    """``open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir, **kwargs)``.

    Args:
        model_name: the open_clip model name, e.g. ``ViT-B-32``.
        pretrained: a pretrained tag (``openai``: downloaded once into ``cache_dir``), a local checkpoint file,
            or None for random weights.
        cache_dir: where downloaded weights are kept.
        config_key: the bundle config id that sets ``pretrained`` (named in the error).

    Raises:
        WeightsUnavailableError: a tag's weights could not be downloaded; the message names the bundle's
            ``small.json`` and the local-file override, and the download's own traceback is left out.
    """
    import open_clip

    try:
        return open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir, **kwargs)
    except (RuntimeError, OSError) as e:
        if pretrained is None or Path(pretrained).is_file():
            raise
        reason = str(e).splitlines()[0][:300]
        raise WeightsUnavailableError(
            f"the pretrained weights {pretrained!r} of open_clip {model_name} could not be loaded ({reason}). "
            "Without access to the model hub, run the bundle's CPU setting: --config_file "
            "\"['configs/train.json','configs/small.json']\" (the same overlay after evaluate.json or "
            f"inference.json), or give the weights as a local file: --{config_key} /path/to/open_clip_pytorch_model.bin"
        ) from None
