"""Does the network read the text? Train a text-guided bundle (TIRNet or TGC-Net) on synthetic LViT data, then
evaluate the test split with the correct text, with texts shuffled across images, with an empty text (target:
every finding, named or not), and re-phrased with words and templates never seen in training; and report the
false-positive rate on the prompts that name nothing (a zone without a lesion, an unrelated sentence: the
fraction of them that get a non-empty mask). Repeat for the bundle's ablations and ``text_dropout``.

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

import json
import random
import time
from pathlib import Path

import numpy as np

from lmseg_components.cli import run_script
from lmseg_components.data import make_synthetic_lvit, paraphrase_zones, read_lvit_split
from lmseg_components.data.synthetic import LungZone
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, evaluate_metrics, run_workflow

VARIANTS = {
    "tirnet_lmis": {
        "full": {},
        "rtmb_off": {"use_rtmb": False},
        "cdcb_off": {"use_cdcb": False},
        "rgc_off": {"rgc_weight": 0.0},
        "bs_off": {"bs_weight": 0.0},
        "text_dropout": {"text_dropout": 0.3},
    },
    "tgcnet_lmis": {
        "full": {},
        "cnn_off": {"use_cnn": False},
        "vit_off": {"use_vit": False},
        "primary_only": {"text_mode": "primary"},
        "aux_only": {"text_mode": "auxiliary"},
        "bidirectional": {"calibration": "bidirectional"},
        "text_dropout": {"text_dropout": 0.3},
    },
}


def evaluation_conditions(data: Path, seed: int) -> tuple[dict[str, list[dict]], list[dict]]:
    """The test split of a synthetic LViT set as evaluation conditions (``correct``, ``shuffled``, ``empty``: the
    every-finding mask as target, ``paraphrased``), and the items whose prompt names nothing."""
    layout = json.loads((data / "synthetic.json").read_text())
    records = read_lvit_split(data, "Test")
    nothing = [r for r in records if r["name"] in layout.get("names_nothing", [])]
    test = [r for r in records if r not in nothing]
    if any("label_all" not in r for r in test):
        raise SystemExit(f"{data} has no labelcol_all masks (made by an older lmseg): delete it to regenerate it")
    shuffled = [r["text"] for r in test]
    random.Random(seed).shuffle(shuffled)
    rng = np.random.default_rng(seed)
    zones = [[LungZone(*z.split()) for z in layout["images"][r["name"]]["mentioned"]] for r in test]
    conditions = {
        "correct": test,
        "shuffled": [{**r, "text": t} for r, t in zip(test, shuffled, strict=True)],
        "empty": [{**r, "text": "", "label": r["label_all"]} for r in test],
        "paraphrased": [{**r, "text": paraphrase_zones(z, rng)} for r, z in zip(test, zones, strict=True)],
    }
    return conditions, nothing


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
    conditions, nothing = evaluation_conditions(data, seed)
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
        # a prompt naming nothing has an empty mask: its per-image Dice is 1 with an empty prediction, else 0
        false_positive = 1.0 - evaluate_metrics(bundle, common, nothing, (SMALL_CONFIG,))["val_mean_dice"]
        rows.append((name, minutes, result, false_positive))
        print(
            f"[{name}] trained in {minutes:.1f} min: "
            + ", ".join(f"{c} m-Dice {m['val_mean_dice']:.3f}" for c, m in result.items())
            + f", false positives on prompts naming nothing {false_positive:.2f}",
            flush=True,
        )

    print(
        f"\n{name_of_bundle} text grounding, synthetic LViT test split ({len(conditions['correct'])} images, "
        f"{len(nothing)} more whose prompt names nothing), {epochs} epochs, "
        f"{image_size}px, overrides {overrides}, device {device}"
    )
    header = f"{'variant':<13} {'train min':>9} | " + " | ".join(f"{c + ' m/g-Dice':>20}" for c in conditions)
    header += " | FP rate (names nothing)"
    print(header)
    print("-" * len(header))
    for name, minutes, result, false_positive in rows:
        cells = " | ".join(
            f"{result[c]['val_mean_dice']:>9.3f} / {result[c]['val_global_dice']:<8.3f}" for c in conditions
        )
        print(f"{name:<13} {minutes:>9.1f} | {cells} | {false_positive:.2f}")
    return rows


if __name__ == "__main__":
    run_script(run, __doc__)
