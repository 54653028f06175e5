"""Speed options of a bundle's network: ``channels_last`` memory format and ``torch.compile``, both off by default.

Both keep the outputs (within floating-point tolerance, ``tests/test_accelerate.py``) and the ``state_dict`` keys,
so checkpoints move freely between runs with and without them.
"""

from __future__ import annotations

import torch
from torch import nn

from lmseg_components.arguments import require_bool

__all__ = ["accelerate"]


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    if tensor.dim() == 5:
        return tensor.contiguous(memory_format=torch.channels_last_3d)
    return tensor


def accelerate(network: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Apply the speed options to ``network`` in place and return it.

    Args:
        network: the module (already on its device).
        channels_last: store 4-D parameters (2-D convolution kernels) as ``torch.channels_last`` and 5-D ones as
            ``torch.channels_last_3d``; convolutions then run in NHWC, which tensor cores and oneDNN prefer. Inputs
            stay as they are (the first convolution's output follows its kernel's format).
        compile: ``network.compile()``: ``torch.compile`` of its ``forward`` (TorchInductor), in place, so the
            ``state_dict`` keys stay those of the plain module. The first batches pay the compilation (about
            75 s for a small TIRNet on 2 CPU cores), so it pays off on long runs.

    Raises:
        TypeError: a switch that is not a bool (``--compile false`` on the command line is the string "false").
    """
    require_bool("channels_last", channels_last)
    require_bool("compile", compile)
    if channels_last:
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.data = _channels_last(parameter.data)
    if compile:
        network.compile()
    return network
