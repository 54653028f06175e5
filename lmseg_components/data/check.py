"""Detect a dataset's layout and list every problem in it (``lmseg check-data``)."""

from __future__ import annotations

from pathlib import Path

from lmseg_components.data.lvit import LVIT_SPLITS, check_lvit
from lmseg_components.data.msd import check_msd
from lmseg_components.data.problems import DataProblem

__all__ = ["detect_layout", "check_dataset"]


def detect_layout(root: str | Path) -> str | None:
    """``msd`` when ``dataset.json`` is present, ``lvit`` when a ``<split>_Folder`` is, else None."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return "msd"
    if any((root / f"{s}_Folder").is_dir() for s in LVIT_SPLITS):
        return "lvit"
    return None


def check_dataset(root: str | Path, layout: str | None = None) -> tuple[str | None, list[DataProblem]]:
    """Return (layout, problems) for the dataset at ``root``; ``layout`` is detected when None."""
    root = Path(root)
    if not root.is_dir():
        return layout, [DataProblem(str(root), "dataset folder does not exist")]
    layout = layout or detect_layout(root)
    if layout == "lvit":
        return layout, check_lvit(root)
    if layout == "msd":
        return layout, check_msd(root, deep=True)
    if layout is None:
        return None, [
            DataProblem(str(root), "unknown layout: expected dataset.json (MSD) or Train/Val/Test_Folder (LViT)")
        ]
    raise ValueError(f"layout must be 'lvit' or 'msd', got {layout!r}.")
