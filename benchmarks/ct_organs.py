"""Per-organ Dice and HD95 of the TGC-Net CT bundle on the synthetic MSD set.

Writes a synthetic abdominal CT set (``make_synthetic_msd``), trains ``bundles/tgcnet_ct_organs`` through its own
``train.json`` (in-process, same as ``python -m monai.bundle run training``), evaluates the held-out volumes with
``evaluate.json`` (predictions inverted to each volume's own grid, HD95 in mm) and prints one row per organ, plus
the same volumes evaluated with the organ prompts rotated across the organ channels. Extra ``--key value`` options
are config overrides. The row goes to ``benchmarks/results/ct_organs.json`` (``--results_dir`` another folder),
which the bundle docs render; a rerun with the same ``--out`` resumes a finished training and only evaluates (the
training minutes are kept in ``<out>/train_minutes.json``).

    python benchmarks/ct_organs.py --out runs/ct_organs --epochs 40 --image_size 64
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from lmseg_components.data import make_synthetic_msd, read_msd_labels, read_msd_split
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, evaluate_metrics, run_workflow

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.results import RESULTS_DIR, provenance, save_results  # noqa: E402
from benchmarks.script import check_overrides, run_script  # noqa: E402


def _per_class(path: Path) -> dict[str, list[float]]:
    """Columns ``class0..`` of a MetricsSaver ``*_raw.csv`` (one row per volume)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    classes = [k for k in rows[0] if k.startswith("class")]
    return {c: [float(r[c]) for r in rows] for c in classes}


def run(
    out: str = "runs/ct_organs",
    epochs: int = 40,
    image_size: int = 64,
    seed: int = 0,
    n_cases: int = 16,
    device: str = "cpu",
    num_workers: int = 2,
    results_dir: str = str(RESULTS_DIR),
    **overrides,
):
    started = time.perf_counter()
    try:
        device_config = device_expression(device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    check_overrides(overrides, ["tgcnet_ct_organs"], ["train.json", SMALL_CONFIG, "evaluate.json"])
    root = Path(out).resolve()
    data = root / "data"
    if not (data / "dataset.json").is_file():
        make_synthetic_msd(data, seed=seed, n_cases=n_cases)
    organs = [name for k, name in sorted(read_msd_labels(data).items()) if k != 0]
    bundle = bundle_dir("tgcnet_ct_organs")
    common = {
        "bundle_root": str(root / "run"),
        "dataset_dir": str(data),
        "text_cache_dir": str(root / "text_cache"),
        "image_size": image_size,
        "device": device_config,
        "num_workers": num_workers,
        **overrides,
    }
    start = time.perf_counter()
    run_workflow(bundle, "training", ["train.json", SMALL_CONFIG], {**common, "epochs": epochs}, logging_conf=False)
    minutes_file = root / "train_minutes.json"
    if not minutes_file.is_file():  # a rerun that resumed a finished training keeps the training's minutes
        minutes_file.write_text(json.dumps((time.perf_counter() - start) / 60))
    minutes = json.loads(minutes_file.read_text())
    test = read_msd_split(data, "test")
    correct = evaluate_metrics(bundle, common, overlays=(SMALL_CONFIG,))
    dice = _per_class(root / "run" / "eval" / "val_mean_dice_raw.csv")
    hd95 = _per_class(root / "run" / "eval" / "val_hd95_raw.csv")
    rotated = [{**r, "text": r["text"][1:] + r["text"][:1]} for r in test]
    shuffled = evaluate_metrics(bundle, common, rotated, (SMALL_CONFIG,))

    print(
        f"\ntgcnet_ct_organs on synthetic MSD ({len(test)} test volumes of {n_cases}), {epochs} epochs at "
        f"{image_size} px, trained in {minutes:.1f} min on {device}, overrides {overrides}"
    )
    print(f"{'organ':<10} | {'Dice mean':>9} | {'Dice min':>8} | {'HD95 mm':>8}")
    print("-" * 46)
    for index, organ in enumerate(organs):
        d, h = dice[f"class{index}"], hd95[f"class{index}"]
        print(f"{organ:<10} | {np.nanmean(d):>9.3f} | {np.nanmin(d):>8.3f} | {np.nanmean(h):>8.2f}")
    print(f"{'mean':<10} | {correct['val_mean_dice']:>9.3f} | {'':>8} | {correct['val_hd95']:>8.2f}")
    print(f"prompts rotated across organs: mean Dice {shuffled['val_mean_dice']:.3f}")
    row = {f"{organ}_dice": float(np.nanmean(dice[f"class{i}"])) for i, organ in enumerate(organs)}
    row |= {f"{organ}_hd95": float(np.nanmean(hd95[f"class{i}"])) for i, organ in enumerate(organs)}
    row |= {"mean_dice": float(correct["val_mean_dice"]), "mean_hd95": float(correct["val_hd95"])}
    row |= {"rotated_dice": float(shuffled["val_mean_dice"]), "train_minutes": minutes}
    columns = [(f"{organ}_dice", f"{organ} Dice") for organ in organs]
    columns += [("mean_dice", "mean Dice"), ("mean_hd95", "mean HD95 (mm)"), ("rotated_dice", "prompts rotated: Dice")]
    columns += [("train_minutes", "train min")]
    caption = (
        f"tgcnet_ct_organs on the synthetic MSD set ({n_cases} volumes, data seed {seed}; {len(test)} held out), "
        f"{epochs} epochs at {image_size} px, overrides {overrides or 'none'}: per-organ Dice, mean HD95 on each "
        "volume's own grid, and the mean Dice with the organ prompts rotated across the organ channels."
    )
    settings = {"epochs": epochs, "image_size": image_size, "data": [seed, n_cases], "overrides": overrides}
    measured = provenance("tgcnet_ct_organs", device, [seed], started)
    path = save_results("ct_organs", {"full": [row]}, columns, measured, caption, settings, Path(results_dir))
    print(f"result: {path}")
    return correct, shuffled


if __name__ == "__main__":
    run_script(run, __doc__)
