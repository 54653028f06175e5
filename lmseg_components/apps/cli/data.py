"""``lmseg make-synthetic``, ``check-data`` and ``demo``: datasets in the real layouts, and the TIRNet demo on one."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

__all__ = ["DEMO_MARKER", "check_data", "demo", "make_synthetic"]

DEMO_MARKER = ".lmseg-demo"


def make_synthetic(
    out: str,
    kind: str = "lvit",
    seed: int = 0,
    size: int = 128,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    n_cases: int = 12,
    n_patients: int = 10,
    naming: str = "qata",
    text_format: str = "xlsx",
    scanner: str = "A",
    difficulty: str = "standard",
    n_benign: int = 8,
    n_malignant: int = 6,
    n_normal: int = 4,
    nothing_fraction: float = 0.1,
    overwrite: bool = False,
) -> None:
    """Write a synthetic dataset in a real layout and print a short summary (the lvit manifest, with every image's
    zones, is ``<out>/synthetic.json``).

    Args:
        out: output folder: new or empty (see ``overwrite``).
        kind: ``lvit`` (2D images + masks + descriptions, QaTa/MosMed layout), ``msd`` (3D CT NIfTI), ``acdc``
            (cardiac MRI in the ACDC layout) or ``busi`` (breast ultrasound PNGs in the BUSI layout).
        seed: random seed; the same seed gives the same dataset.
        size: lvit image side, busi image height, in pixels.
        n_train, n_val, n_test: lvit images per split.
        n_cases: msd volumes.
        n_patients: acdc patients (two frames each).
        naming: lvit mask naming, ``qata`` (mask_<image>) or ``mosmed`` (same name).
        text_format: lvit text table, ``xlsx`` or ``csv``.
        scanner: acdc acquisition, ``A`` or ``B`` (another spacing, contrast curve, range, bias field and noise;
            the same seed gives the same anatomy on both).
        difficulty: acdc ``standard`` or ``hard`` (lower myocardium contrast, partial-volume blur, stronger bias
            field and noise, papillary muscles, irregular RV, empty apical slices, slice misalignment).
        n_benign, n_malignant, n_normal: busi images per class.
        nothing_fraction: lvit: ``round(nothing_fraction * n_test)`` more test images whose prompt names nothing
            (a zone without a lesion, an unrelated sentence) and whose mask is empty.
        overwrite: write into a non-empty ``out`` (files of the same names are replaced, others stay).
    """
    from lmseg_components.data.synthetic import SYNTHETIC_MAKERS
    from lmseg_components.files import prepare_output_dir

    if kind not in SYNTHETIC_MAKERS:
        sys.exit(f"error: --kind must be one of {sorted(SYNTHETIC_MAKERS)}, got {kind!r}")
    make = SYNTHETIC_MAKERS[kind]
    options = {
        "seed": seed,
        "size": size,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "n_cases": n_cases,
        "n_patients": n_patients,
        "naming": naming,
        "text_format": text_format,
        "scanner": scanner,
        "difficulty": difficulty,
        "n_benign": n_benign,
        "n_malignant": n_malignant,
        "n_normal": n_normal,
        "nothing_fraction": nothing_fraction,
    }
    accepted = inspect.signature(make).parameters  # each kind takes its own options
    defaults = {name: p.default for name, p in inspect.signature(make_synthetic).parameters.items()}
    foreign = [name for name, value in options.items() if name not in accepted and value != defaults[name]]
    if foreign:
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in options if name in accepted)
        given = ", ".join(f"--{name.replace('_', '-')}" for name in foreign)
        sys.exit(f"error: --kind {kind} does not take {given}; it takes {takes}")
    try:
        prepare_output_dir(out, overwrite)
    except (ValueError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    try:
        summary = make(out, **{name: value for name, value in options.items() if name in accepted})
    except ValueError as e:
        sys.exit(f"error: {e}")
    if kind == "lvit":
        print(
            f"synthetic LViT dataset in {out}: {summary['counts']}, text-ignoring oracle m-Dice "
            f"{summary['text_ignoring_oracle_mdice']:.3f}; manifest {Path(out) / 'synthetic.json'}"
        )
    else:
        print(json.dumps(summary, indent=2))


def check_data(root: str, layout: str | None = None) -> None:
    """Print every problem found in the dataset at ``root``; exit with status 1 if there is any.

    Args:
        root: dataset folder: LViT (``*_Folder``), MSD (``dataset.json``), ACDC (``patientXXX`` folders) or BUSI
            (``benign``/``malignant``/``normal`` folders).
        layout: ``lvit``, ``msd``, ``acdc`` or ``busi``; detected when omitted.
    """
    from lmseg_components.data.check import LAYOUTS, check_dataset

    if layout is not None and layout not in LAYOUTS:
        sys.exit(f"error: --layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    layout, problems = check_dataset(root, layout)
    for problem in problems:
        print(f"PROBLEM {problem}")
    if problems:
        print(f"{len(problems)} problem(s) in {root} (layout: {layout})")
        sys.exit(1)
    print(f"OK: {root} is a valid {layout} dataset")


def demo(
    out: str = "runs/demo",
    seed: int = 0,
    epochs: int = 30,
    image_size: int = 64,
    width: int = 16,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    device: str = "cpu",
    num_workers: int = 2,
    overwrite: bool = False,
) -> None:
    """The TIRNet demo end to end on synthetic data: generate -> train -> evaluate -> infer.

    Writes ``<out>/data`` (the dataset), ``<out>/models`` (``model.pt``, resumable ``checkpoint.pt``),
    ``<out>/eval`` (``metrics.csv``, per-image CSVs, TensorBoard logs) and ``<out>/eval/inference`` (mask and
    overlay PNGs), then prints the metrics table. Rerunning resumes training from the checkpoint.

    ``out`` is the demo's own run folder (marked by ``<out>/.lmseg-demo``): a new or empty folder, or one an
    earlier demo wrote; any other non-empty folder is refused unless ``overwrite`` is given.
    ``device`` is ``cpu``, ``cuda`` or ``cuda:N``.
    """
    from lmseg_components.data.synthetic import make_synthetic_lvit
    from lmseg_components.files import prepare_output_dir
    from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, run_workflow

    root = Path(out).resolve()
    try:
        device_config = device_expression(device)
        if not (root / DEMO_MARKER).is_file():
            prepare_output_dir(root, overwrite)
            (root / DEMO_MARKER).write_text("lmseg demo run folder: rerunning `lmseg demo` here resumes it\n")
    except (ValueError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    data = root / "data"
    if not (data / "synthetic.json").is_file():
        summary = make_synthetic_lvit(
            data, seed=seed, size=max(image_size, 64), n_train=n_train, n_val=n_val, n_test=n_test
        )
        print(
            f"synthetic LViT dataset in {data}: {summary['counts']}, "
            f"text-ignoring oracle m-Dice {summary['text_ignoring_oracle_mdice']:.3f}"
        )
    check_data(str(data))
    bundle = bundle_dir("tirnet_lmis")
    common = {
        "bundle_root": str(root),
        "dataset_dir": str(data),
        "image_size": image_size,
        "width": width,
        "device": device_config,
        "num_workers": num_workers,
        "seed": seed,
    }
    run_workflow(bundle, "training", ["train.json", SMALL_CONFIG], {**common, "epochs": epochs})
    run_workflow(bundle, "evaluating", ["train.json", SMALL_CONFIG, "evaluate.json"], common)
    run_workflow(bundle, "inference", ["inference.json", SMALL_CONFIG], {**common, "num_workers": 0})
    overlays = sorted((root / "eval" / "inference").glob("*_overlay.png"))
    metrics = dict(line.split(",")[:2] for line in (root / "eval" / "metrics.csv").read_text().split())
    print(f"\n=== TIRNet on the synthetic test split ({root / 'eval' / 'metrics.csv'}) ===")
    print(f"{'metric':<8} {'value':>8}")
    for name, key in (
        ("m-Dice", "mean_dice"),
        ("m-IoU", "mean_iou"),
        ("g-Dice", "global_dice"),
        ("g-IoU", "global_iou"),
    ):
        print(f"{name:<8} {float(metrics['val_' + key]):>8.4f}")
    print(f"per-image Dice: {root / 'eval' / 'val_mean_dice_raw.csv'}")
    print(f"{len(overlays)} overlay PNGs in {root / 'eval' / 'inference'}, e.g. {overlays[0] if overlays else '-'}")
    print(f"TensorBoard: tensorboard --logdir {root / 'eval' / 'tensorboard'}")
