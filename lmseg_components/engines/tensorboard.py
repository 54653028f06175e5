"""Output and batch transforms for MONAI's TensorBoard handlers: named functions instead of config lambdas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["label_map_panels", "step_scalars"]


def step_scalars(keys: Sequence[str]) -> Callable[[list[dict]], dict[str, float]]:
    """An ``output_transform`` for ``TensorBoardStatsHandler``: ``{key: float}`` of the ``keys`` that a step's
    output (a list of per-item dicts, the first holding the step's values) has; e.g. J-RAS's ``loss``,
    ``contrastive_loss`` and ``hit_rate``, the last two only on retriever steps."""

    def scalars(output: list[dict]) -> dict[str, float]:
        return {key: float(output[0][key]) for key in keys if key in output[0]}

    return scalars


def label_map_panels(keys: Sequence[str], num_classes: int) -> Callable[[list[dict]], list[torch.Tensor]]:
    """A ``batch_transform`` / ``output_transform`` for ``TensorBoardImageHandler``: the first item's ``keys``,
    an image key as it is and a one-hot key (``label``, ``pred``; (K, H, W)) as its label map scaled to [0, 1]
    (``argmax / (K - 1)``, (1, H, W)), so the classes show as grey levels."""

    def panels(batch: list[dict]) -> list[torch.Tensor]:
        item = batch[0]
        return [item[key] if key == "image" else item[key].argmax(0, keepdim=True) / (num_classes - 1) for key in keys]

    return panels
