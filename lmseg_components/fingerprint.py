"""Fingerprints of module weights: tie a derived artefact (feature cache, retrieval index) to exact weights."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["weights_fingerprint"]


def weights_fingerprint(module: nn.Module, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` characters) over the names and bytes of ``module.state_dict()``.

    Two modules share a fingerprint only if every parameter and buffer is bitwise equal; where the weights
    were loaded from does not matter.
    """
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]
