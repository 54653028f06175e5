"""Pretrained open_clip weights by tag (downloaded from the model hub into a cache) or from a local file, with one
clear error when the hub cannot be reached: the bundles' paper defaults need it, their ``small.json`` does not."""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

__all__ = ["WeightsUnavailableError", "create_open_clip"]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights named by a tag could not be downloaded (no network or no access to the model hub)."""


def _cause(error: BaseException | None) -> WeightsUnavailableError | None:
    """The :class:`WeightsUnavailableError` in ``error``'s chain (MONAI wraps it in "Failed to instantiate")."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, WeightsUnavailableError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _install_exit_hook() -> None:
    """Make a :class:`WeightsUnavailableError` that nobody catches end the process with its one line (``error:
    ...``, exit status 1) instead of the traceback through MONAI's config resolution; other errors are shown as
    before."""
    previous = sys.excepthook
    if getattr(previous, "_lmseg_weights_hook", False):
        return

    def hook(kind, error, traceback):
        found = _cause(error)
        if found is None:
            previous(kind, error, traceback)
        else:
            print(f"error: {found}", file=sys.stderr)

    hook._lmseg_weights_hook = True
    sys.excepthook = hook


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
        _install_exit_hook()
        raise WeightsUnavailableError(
            f"the pretrained weights {pretrained!r} of open_clip {model_name} could not be loaded ({reason}). "
            "Without access to the model hub, run the bundle's CPU setting: --config_file "
            "\"['configs/train.json','configs/small.json']\" (the same overlay after evaluate.json or "
            f"inference.json), or give the weights as a local file: --{config_key} /path/to/open_clip_pytorch_model.bin"
        ) from None
