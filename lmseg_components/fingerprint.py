"""Fingerprints of module weights and of datalists: tie a derived artefact (feature cache, retrieval index,
checkpoint) to the exact weights or data it came from."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["weights_fingerprint", "datalist_fingerprint"]


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


def datalist_fingerprint(datalist: Sequence[dict], root: str | Path | None = None, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` characters) of what a datalist trains on: every record's values, where a
    value naming an existing file stands for its path (relative to ``root`` when inside it) and its size.

    Records are taken in order (the order is part of the run). Moving the dataset folder with ``root`` keeps
    the fingerprint; a changed text, an added, removed or resized file changes it. Contents are not read, so
    a multi-gigabyte CT set fingerprints in milliseconds.
    """
    root = Path(root).resolve() if root is not None else None
    digest = hashlib.sha256()
    for record in datalist:
        for key in sorted(record):
            digest.update(f"{key}={_describe(record[key], root)}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()[:length]


def _describe(value, root: Path | None) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_describe(v, root) for v in value) + "]"
    if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
        path = Path(value).resolve()
        if root is not None and path.is_relative_to(root):
            path = path.relative_to(root)
        return f"file:{path.as_posix()}:{os.path.getsize(value)}"
    return json.dumps(value, sort_keys=True, default=str)
