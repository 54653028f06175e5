"""The ``lmseg`` command line (python-fire): ``lmseg make-synthetic``, ``lmseg check-data``, ``lmseg demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire

from lmseg_components.data.check import check_dataset
from lmseg_components.data.synthetic import make_synthetic_lvit, make_synthetic_msd

__all__ = ["make_synthetic", "check_data", "demo", "main"]


def make_synthetic(
    out: str,
    kind: str = "lvit",
    seed: int = 0,
    size: int = 128,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    n_cases: int = 12,
    naming: str = "qata",
    text_format: str = "xlsx",
) -> None:
    """Write a synthetic dataset in a real layout.

    Args:
        out: output folder.
        kind: ``lvit`` (2D images + masks + descriptions, QaTa/MosMed layout) or ``msd`` (3D CT NIfTI).
        seed: random seed; the same seed gives the same dataset.
        size: lvit image side in pixels.
        n_train, n_val, n_test: lvit images per split.
        n_cases: msd volumes.
        naming: lvit mask naming, ``qata`` (mask_<image>) or ``mosmed`` (same name).
        text_format: lvit text table, ``xlsx`` or ``csv``.
    """
    if kind == "lvit":
        summary = make_synthetic_lvit(out, seed, size, n_train, n_val, n_test, naming, text_format)
    elif kind == "msd":
        summary = make_synthetic_msd(out, seed, n_cases)
    else:
        sys.exit(f"error: --kind must be 'lvit' or 'msd', got {kind!r}")
    print(json.dumps(summary, indent=2))


def check_data(root: str, layout: str | None = None) -> None:
    """Print every problem found in the dataset at ``root``; exit with status 1 if there is any.

    Args:
        root: dataset folder (LViT layout with ``*_Folder`` or MSD layout with ``dataset.json``).
        layout: ``lvit`` or ``msd``; detected when omitted.
    """
    layout, problems = check_dataset(root, layout)
    for problem in problems:
        print(f"PROBLEM {problem}")
    if problems:
        print(f"{len(problems)} problem(s) in {root} (layout: {layout})")
        sys.exit(1)
    print(f"OK: {root} is a valid {layout} dataset")


def demo(out: str = "runs/demo", seed: int = 0) -> None:
    """Generate a synthetic LViT dataset and check it (the TIRNet demo extends this end to end)."""
    root = Path(out) / "data"
    summary = make_synthetic_lvit(root, seed=seed, n_train=64, n_val=16, n_test=16)
    print(f"synthetic LViT dataset in {root}: {summary['counts']}")
    print(f"text-ignoring oracle m-Dice: {summary['text_ignoring_oracle_mdice']:.3f}")
    check_data(str(root))


def main() -> None:
    fire.Fire({"make-synthetic": make_synthetic, "check-data": check_data, "demo": demo})


if __name__ == "__main__":
    main()
