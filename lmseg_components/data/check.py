"""Detect a dataset's layout and list every problem in it (``lmseg check-data``).

The checks are the readers' own validation, run over everything the bundles' training reads, so that a dataset
``check-data`` passes is one training accepts: LViT (``Train`` and ``Val`` splits, binary masks), MSD (3-D
complete volumes, ``labels`` ``0..N-1``, label values in the map, a non-empty train/val/test split), ACDC (the
J-RAS reader, a non-empty patient split) and BUSI (images paired with binary masks of their size).
"""

from __future__ import annotations

from pathlib import Path

from lmseg_components.data.acdc import check_acdc, check_busi
from lmseg_components.data.lvit import LVIT_SPLITS, check_lvit
from lmseg_components.data.msd import check_msd, read_msd
from lmseg_components.data.problems import DataProblem
from lmseg_components.data.splits import split_problems

__all__ = ["LAYOUTS", "detect_layout", "check_dataset"]

LAYOUTS = ("lvit", "msd", "acdc", "busi")
BUSI_CLASSES = ("benign", "malignant", "normal")


def detect_layout(root: str | Path) -> str | None:
    """``msd`` when ``dataset.json`` is present, ``lvit`` when a ``<split>_Folder`` is, ``acdc`` when a
    ``patientXXX/patientXXX_frameYY.nii[.gz]`` is, ``busi`` when a ``benign``/``malignant``/``normal`` folder is,
    else None."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return "msd"
    if any((root / f"{s}_Folder").is_dir() for s in LVIT_SPLITS):
        return "lvit"
    if any(root.glob("patient*/patient*_frame*.nii*")):
        return "acdc"
    if any((root / c).is_dir() for c in BUSI_CLASSES):
        return "busi"
    return None


def check_dataset(root: str | Path, layout: str | None = None) -> tuple[str | None, list[DataProblem]]:
    """Return (layout, problems) for the dataset at ``root``; ``layout`` (one of :data:`LAYOUTS`) is detected
    when None. Splits are checked with the bundles' default ``split_fractions`` (0.7, 0.1, 0.2) and seed 0."""
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if not root.is_dir():
        return layout, [DataProblem(str(root), "dataset folder does not exist")]
    layout = layout or detect_layout(root)
    if layout == "lvit":
        return layout, check_lvit(root)
    if layout == "msd":
        problems = check_msd(root, deep=True)
        return layout, problems or split_problems(read_msd(root), root)
    if layout == "acdc":
        return layout, check_acdc(root)
    if layout == "busi":
        return layout, check_busi(root, BUSI_CLASSES)
    return None, [
        DataProblem(
            str(root),
            "unknown layout: expected dataset.json (MSD), Train/Val/Test_Folder (LViT), "
            "patientXXX/patientXXX_frameYY.nii.gz (ACDC) or benign/malignant/normal folders (BUSI)",
        )
    ]
