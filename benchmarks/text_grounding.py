"""Does the network read the text? Train a text-guided bundle (TIRNet or TGC-Net) on synthetic LViT data, then
evaluate the test split with the correct text, with texts shuffled across images, and with an empty text; repeat
for the bundle's ablations.

Every variant is trained through the bundle's own ``train.json`` (in-process, same as
``python -m monai.bundle run training``) with the same data, seed and number of epochs. Extra ``--key value``
options are config overrides (e.g. ``--width 16`` for TIRNet, ``--dim 64`` for TGC-Net).

    python benchmarks/text_grounding.py --out runs/text_grounding --epochs 40 --image_size 64 --width 16
    python benchmarks/text_grounding.py --bundle tgcnet_lmis --image_size 128 --epochs 20 --variants full
    python benchmarks/text_grounding.py --bundle tgcnet_lmis --image_size 128 --epochs 20 --variants cnn_off,vit_off

Several variants are one comma-separated value (``--variants cnn_off,vit_off``); a space-separated list is
refused before anything is trained.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from lmseg_components.cli import run_script
from lmseg_components.data import make_synthetic_lvit, read_lvit_split
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, evaluate_metrics, run_workflow

VARIANTS = {
    "tirnet_lmis": {
        "full": {},
        "rtmb_off": {"use_rtmb": False},
        "cdcb_off": {"use_cdcb": False},
        "rgc_off": {"rgc_weight": 0.0},
        "bs_off": {"bs_weight": 0.0},
    },
    "tgcnet_lmis": {
        "full": {},
        "cnn_off": {"use_cnn": False},
        "vit_off": {"use_vit": False},
        "primary_only": {"text_mode": "primary"},
        "aux_only": {"text_mode": "auxiliary"},
        "bidirectional": {"calibration": "bidirectional"},
    },
}


def run(
    out: str = "runs/text_grounding",
    bundle: str = "tirnet_lmis",
    epochs: int = 40,
    image_size: int = 64,
    seed: int = 0,
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    variants: str | tuple | None = None,
    device: str = "cpu",
    num_workers: int = 2,
    text_encoder_name: str = "minilm",
    **overrides,
):
    try:
        device_config = device_expression(device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if bundle not in VARIANTS:
        raise SystemExit(f"unknown bundle {bundle!r}; choose from {list(VARIANTS)}")
    table = VARIANTS[bundle]
    names = list(table) if variants is None else [variants] if isinstance(variants, str) else list(variants)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(table)}")
    root = Path(out).resolve()
    data = root / "data"
    if not (data / "synthetic.json").is_file():
        make_synthetic_lvit(data, seed=seed, size=max(64, image_size), n_train=n_train, n_val=n_val, n_test=n_test)
    test = read_lvit_split(data, "Test")
    texts = [r["text"] for r in test]
    shuffled = texts[:]
    random.Random(seed).shuffle(shuffled)
    conditions = {
        "correct": test,
        "shuffled": [{**r, "text": t} for r, t in zip(test, shuffled, strict=True)],
        "empty": [{**r, "text": ""} for r in test],
    }
    name_of_bundle, bundle = bundle, bundle_dir(bundle)
    rows = []
    for name in names:
        common = {
            "bundle_root": str(root / name),
            "dataset_dir": str(data),
            "text_cache_dir": str(root / "text_cache"),
            "image_size": image_size,
            "seed": seed,
            "device": device_config,
            "num_workers": num_workers,
            "text_encoder_name": text_encoder_name,
            **overrides,
            **table[name],
        }
        start = time.perf_counter()
        run_workflow(bundle, "training", ["train.json", SMALL_CONFIG], {**common, "epochs": epochs}, logging_conf=False)
        minutes = (time.perf_counter() - start) / 60
        result = {c: evaluate_metrics(bundle, common, records, (SMALL_CONFIG,)) for c, records in conditions.items()}
        rows.append((name, minutes, result))
        print(
            f"[{name}] trained in {minutes:.1f} min: "
            + ", ".join(f"{c} m-Dice {m['val_mean_dice']:.3f}" for c, m in result.items()),
            flush=True,
        )

    print(
        f"\n{name_of_bundle} text grounding, synthetic LViT test split ({len(test)} images), {epochs} epochs, "
        f"{image_size}px, overrides {overrides}, device {device}"
    )
    header = f"{'variant':<13} {'train min':>9} | " + " | ".join(f"{c + ' m/g-Dice':>20}" for c in conditions)
    print(header)
    print("-" * len(header))
    for name, minutes, result in rows:
        cells = " | ".join(
            f"{result[c]['val_mean_dice']:>9.3f} / {result[c]['val_global_dice']:<8.3f}" for c in conditions
        )
        print(f"{name:<13} {minutes:>9.1f} | {cells}")
    return rows


if __name__ == "__main__":
    run_script(run, __doc__)
