"""Does the network read the text, in a user's own words? Train a text-guided bundle (TIRNet or TGC-Net) on
synthetic LViT data, then evaluate the test split with the correct text, with texts shuffled across images, with
an empty text (target: every finding, named or not), and re-phrased in the held-out grammar
(:data:`~lmseg_components.text.phrasing.HELD_OUT`: words and templates that neither the generator nor the
training augmentation uses); and report, for each kind of prompt that names nothing (a zone without a lesion, an
unrelated sentence; one extra test image per test image, half of each kind), the fraction that gets a non-empty
mask from the network, the presence AUROC, and the fraction the presence decision finds (with the threshold
training chose on the validation split: a prompt not found gets an empty mask). Variants: the bundle's
ablations, ``text_dropout``, ``no_text_aug`` (no report rewrites, no training prompts that name nothing: the
bundles before them), ``more_negatives`` (twice the training prompts that name nothing) and, for TIRNet,
``bs_mean`` (background suppression averaged over the decoder stages instead of summed: the loss before 0.2.0).

Every variant is trained through the bundle's own ``train.json`` (in-process, same as
``python -m monai.bundle run training``) on the same data (``--data_seed``) once per training seed (``--seeds``);
each run's result is kept as ``<out>/<variant>/seed<k>/result.json``, written step by step, so an interrupted
benchmark resumes where it stopped (a run trained before the presence decision is calibrated by the bundle's own
``presence#calibration`` first). Cells are mean ± sample std over the seeds; with ``full`` and ``no_text_aug``
both run, the paired difference per seed follows, with a paired t-test. Extra ``--key value`` options are config
overrides (e.g. ``--width 16`` for TIRNet, ``--dim 64`` for TGC-Net).

    python benchmarks/text_grounding.py --out runs/text_grounding --epochs 30 --seeds 0,1,2 --variants full,no_text_aug
    python benchmarks/text_grounding.py --bundle tgcnet_lmis --image_size 128 --epochs 20 --variants full
    python benchmarks/text_grounding.py --bundle tgcnet_lmis --image_size 128 --epochs 20 --variants cnn_off,vit_off

The table (mean ± sample std per variant, with the command, commit, bundle version and versions that measured it)
goes to ``benchmarks/results/text_grounding_<bundle>.json`` (``--results`` another folder); variants run separately
with the same settings fill one table, which the bundle docs render (``python benchmarks/results.py``).

Several variants or seeds are one comma-separated value (``--variants cnn_off,vit_off``); a space-separated list
is refused before anything is trained.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from lmseg_components.data import make_synthetic_lvit, paraphrase_zones, read_lvit_split
from lmseg_components.data.synthetic import LungZone
from lmseg_components.engines.checkpoint import trained_values
from lmseg_components.engines.presence import VALIDATION_AUROC
from lmseg_components.files import atomic_write
from lmseg_components.inference import TextBundlePredictor
from lmseg_components.metrics import presence_auroc

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.results import RESULTS_DIR, paired_difference, provenance, save_results  # noqa: E402
from benchmarks.script import check_overrides, comma_names, comma_seeds, run_script, sample_std  # noqa: E402
from lmseg_components.workflows import (  # noqa: E402
    SMALL_CONFIG,
    bundle_dir,
    device_expression,
    evaluate_metrics,
    load_bundle,
    run_workflow,
)

NO_TEXT_AUGMENTATION = {"rephrase_prob": 0.0, "names_nothing_prob": 0.0}
MORE_NEGATIVES = {"names_nothing_prob": 0.3}  # twice the default's prompts naming nothing
VARIANTS = {
    "tirnet_lmis": {
        "full": {},
        "no_text_aug": NO_TEXT_AUGMENTATION,
        "more_negatives": MORE_NEGATIVES,
        "rtmb_off": {"use_rtmb": False},
        "cdcb_off": {"use_cdcb": False},
        "rgc_off": {"rgc_weight": 0.0},
        "bs_off": {"bs_weight": 0.0},
        "bs_mean": {"bs_reduction": "mean"},
        "text_dropout": {"text_dropout": 0.3},
    },
    "tgcnet_lmis": {
        "full": {},
        "no_text_aug": NO_TEXT_AUGMENTATION,
        "more_negatives": MORE_NEGATIVES,
        "cnn_off": {"use_cnn": False},
        "vit_off": {"use_vit": False},
        "primary_only": {"text_mode": "primary"},
        "aux_only": {"text_mode": "auxiliary"},
        "bidirectional": {"calibration": "bidirectional"},
        "text_dropout": {"text_dropout": 0.3},
    },
}


def evaluation_conditions(data: Path, seed: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The test split of a synthetic LViT set as evaluation conditions (``correct``, ``shuffled``, ``empty``: the
    every-finding mask as target, ``paraphrased``: the held-out grammar), and the items whose prompt names nothing
    by kind (``zone``: a zone without a lesion, ``unrelated``: an unrelated sentence)."""
    layout = json.loads((data / "synthetic.json").read_text())
    records = read_lvit_split(data, "Test")
    names_nothing = set(layout.get("names_nothing", []))
    test = [r for r in records if r["name"] not in names_nothing]
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
    nothing = {"zone": [], "unrelated": []}
    for r in records:
        if r["name"] in names_nothing:
            nothing["unrelated" if layout["images"][r["name"]]["names"] == "unrelated" else "zone"].append(r)
    return conditions, nothing


def run(
    out: str = "runs/text_grounding",
    bundle: str = "tirnet_lmis",
    epochs: int = 40,
    image_size: int = 64,
    data_seed: int = 0,
    seeds: str | int | tuple = "0",
    n_train: int = 300,
    n_val: int = 50,
    n_test: int = 100,
    variants: str | tuple | None = None,
    device: str = "cpu",
    num_workers: int = 2,
    text_encoder_name: str = "minilm",
    results_dir: str = str(RESULTS_DIR),
    **overrides,
) -> dict[str, list[dict]]:
    started = time.perf_counter()
    try:
        device_config = device_expression(device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if bundle not in VARIANTS:
        raise SystemExit(f"unknown bundle {bundle!r}; choose from {list(VARIANTS)}")
    table = VARIANTS[bundle]
    names = comma_names(variants, table, "variants")
    check_overrides(overrides, [bundle], ["train.json", SMALL_CONFIG, "evaluate.json"])
    root = Path(out).resolve()
    data = root / "data"
    if not (data / "synthetic.json").is_file():
        size = max(64, image_size)
        make_synthetic_lvit(
            data, seed=data_seed, size=size, n_train=n_train, n_val=n_val, n_test=n_test, nothing_fraction=1.0
        )
    conditions, nothing = evaluation_conditions(data, data_seed)
    bundle_name, bundle = bundle, bundle_dir(bundle)
    results: dict[str, list[dict]] = {}
    for name in names:
        for seed in comma_seeds(seeds):
            run_dir = root / name / f"seed{seed}"
            result_file = run_dir / "result.json"
            common = {
                "bundle_root": str(run_dir),
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
            # each step writes its keys: an interrupted benchmark resumes at the first step whose keys are missing
            if not result_file.is_file():
                start = time.perf_counter()
                configs = ["train.json", SMALL_CONFIG]
                run_workflow(bundle, "training", configs, {**common, "epochs": epochs}, logging_conf=False)
                _save(result_file, {"train_minutes": (time.perf_counter() - start) / 60})
            result = json.loads(result_file.read_text())
            if "correct_mdice" not in result:
                for condition, records in conditions.items():
                    metrics = evaluate_metrics(bundle, common, records, (SMALL_CONFIG,))
                    result[f"{condition}_mdice"] = float(metrics["val_mean_dice"])
                    result[f"{condition}_gdice"] = float(metrics["val_global_dice"])
                _save(result_file, result)
            # a prompt naming nothing has an empty mask: its per-image Dice is 1 with an empty prediction, else 0
            for kind, records in nothing.items():
                if records and f"masks_{kind}" not in result:
                    metrics = evaluate_metrics(bundle, common, records, (SMALL_CONFIG,))
                    result[f"masks_{kind}"] = 1.0 - float(metrics["val_mean_dice"])
                    _save(result_file, result)
            if VALIDATION_AUROC not in trained_values(run_dir / "models"):  # trained before the decision
                load_bundle(bundle, ["train.json", SMALL_CONFIG], common).get_parsed_content("presence#calibration")()
                result.pop("presence_auroc", None)
            if "presence_auroc" not in result:
                run_overrides = {"bundle_root": str(run_dir), "text_cache_dir": str(root / "text_cache")}
                predictor = TextBundlePredictor(bundle, device, run_overrides, model=run_dir / "models" / "model.pt")
                validation = {"presence_validation_auroc": trained_values(run_dir / "models").get(VALIDATION_AUROC)}
                _save(result_file, {**result, **validation, **presence(predictor, conditions["correct"], nothing)})
                result = json.loads(result_file.read_text())
            results.setdefault(name, []).append(result)
            print(f"[{name} seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)
    counts = {kind: len(records) for kind, records in nothing.items()}
    print(
        f"\n{bundle_name} text grounding, synthetic LViT test split ({len(conditions['correct'])} images; prompts "
        f"naming nothing: {counts}), {epochs} epochs, {image_size}px, seeds {seeds}, overrides {overrides}, "
        f"device {device}; mean ± sample std over seeds"
    )
    columns = _columns(list(conditions), list(nothing))
    _print_table(results, columns)
    _print_markdown(results, columns)
    if {"full", "no_text_aug"} <= results.keys():
        _print_paired(results["full"], results["no_text_aug"], columns)
    caption = (
        f"{bundle_name} on the synthetic LViT set ({n_train} / {n_val} / {n_test} images, data seed {data_seed}), "
        f"{epochs} epochs at {image_size} px, {text_encoder_name} text, overrides {overrides or 'none'}: m-Dice per "
        "text condition, the fraction of prompts naming nothing that get a mask from the network, the presence "
        "AUROC, and the fraction each kind the presence decision finds."
    )
    settings = {
        "epochs": epochs,
        "image_size": image_size,
        "data": [data_seed, n_train, n_val, n_test],
        "text_encoder_name": text_encoder_name,
        "overrides": overrides,
    }
    measured = provenance(bundle_name, device, comma_seeds(seeds), started)
    name = f"text_grounding_{bundle_name}"
    print(f"result: {save_results(name, results, columns, measured, caption, settings, Path(results_dir))}")
    return results


def presence(predictor: TextBundlePredictor, test: list[dict], nothing: dict[str, list[dict]]) -> dict[str, float]:
    """The presence decision of a trained model on the test split, with the threshold training chose on the
    validation split (its run record): the AUROC of the correct reports' scores against those of the prompts
    that name nothing, and the fraction of each kind found (a prompt not found gets an empty mask)."""
    present = [predictor(r) for r in test]
    absent = {kind: [predictor(r) for r in records] for kind, records in nothing.items()}
    out = {
        "presence_threshold": predictor.presence_threshold,
        "presence_auroc": presence_auroc(
            [p["score"] for p in present], [a["score"] for v in absent.values() for a in v]
        ),
        "found_correct": float(np.mean([p["found"] for p in present])),
    }
    for kind, items in absent.items():
        if items:
            out[f"found_{kind}"] = float(np.mean([a["found"] for a in items]))
    return out


def _save(path: Path, result: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))


def _cell(rows: list[dict], key: str) -> str:
    values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
    return "—" if np.isnan(values).all() else f"{values.mean():.3f} ± {sample_std(values):.3f}"


def _columns(conditions: list[str], kinds: list[str]) -> list[tuple[str, str]]:
    """(result key, column title) of the summary: m-Dice per condition, the fraction of prompts that name nothing
    that get a mask, the presence AUROC and what the presence decision finds."""
    columns = [(f"{c}_mdice", f"{c} m-Dice") for c in conditions] + [(f"masks_{k}", f"masks ({k})") for k in kinds]
    columns += [("presence_validation_auroc", "presence AUROC (val)"), ("presence_auroc", "presence AUROC")]
    columns += [("found_correct", "found: correct")]
    return columns + [(f"found_{k}", f"found: {k}") for k in kinds]


def _print_table(results: dict[str, list[dict]], columns: list[tuple[str, str]]) -> None:
    header = f"{'variant':<13} | " + " | ".join(f"{title:>17}" for _, title in columns) + " | train min"
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        cells = " | ".join(f"{_cell(rows, key):>17}" for key, _ in columns)
        print(f"{name:<13} | {cells} | {_cell(rows, 'train_minutes')}")


def _print_markdown(results: dict[str, list[dict]], columns: list[tuple[str, str]]) -> None:
    """The table as the bundle docs carry it."""
    print("\n| variant | " + " | ".join(title for _, title in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, rows in results.items():
        print(f"| `{name}` | " + " | ".join(_cell(rows, key) for key, _ in columns) + " |")


def _print_paired(after: list[dict], before: list[dict], columns: list[tuple[str, str]]) -> None:
    """full - no_text_aug, paired by seed: mean ± sample std of the differences and the paired t-test p-value."""
    print("\nfull - no_text_aug, paired by seed (mean ± sample std, paired t-test p)")
    for key, _ in columns:
        a = np.array([r.get(key, np.nan) for r in after])
        b = np.array([r.get(key, np.nan) for r in before])
        if len(a) != len(b) or np.isnan(a).any() or np.isnan(b).any():
            continue
        d = paired_difference(a, b)
        print(f"  {key:<20} {d['mean']:+.3f} ± {d['std']:.3f}  p = {d['p']:.3f}")


if __name__ == "__main__":
    run_script(run, __doc__)
