"""MONAI's ``CheckpointLoader`` with one clear error, naming the file, for a missing, truncated or corrupt
checkpoint (``torch.load`` says ``[Errno 22] Invalid argument`` or ``EOFError`` without the path)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ignite.engine import Engine
from monai.handlers import CheckpointLoader

__all__ = ["CheckedCheckpointLoader", "check_checkpoint_file"]


def check_checkpoint_file(path: str | Path) -> Path:
    """Check that ``path`` is a complete ``torch.save`` file before it is loaded; return it.

    ``torch.save`` writes a zip archive (since PyTorch 1.6): a truncated file has lost the archive's directory at
    its end, and a damaged one fails a member's CRC. Both are found by reading the archive, without unpickling
    anything, so the check is cheap next to the load itself.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``{path}: not a readable checkpoint (...)`` for a truncated, corrupt or non-``torch.save`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint file")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable checkpoint, truncated or not written by torch.save ({e})") from e
    if damaged is not None:
        raise ValueError(f"{path}: not a readable checkpoint, its member {damaged} is corrupt (CRC mismatch)")
    return path


class CheckedCheckpointLoader(CheckpointLoader):
    """``monai.handlers.CheckpointLoader`` that checks the file with :func:`check_checkpoint_file` first, so a
    missing, truncated or corrupt ``model.pt`` stops evaluation or inference with one line naming it. Arguments
    are ``CheckpointLoader``'s."""

    def __call__(self, engine: Engine) -> None:
        check_checkpoint_file(self.load_path)
        super().__call__(engine)
