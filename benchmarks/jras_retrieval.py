"""Does retrieval earn its place? The J-RAS bundle's own ``train.json`` + ``small.json`` / ``evaluate.json``
(in-process, same as ``python -m monai.bundle run training``), one backbone at a time, several ways, same data and
number of updates:

- ``none``: the backbone alone (``use_retrieval: false``);
- ``capacity``: no retrieval, but the segmenter gets the retriever network's own coarse mask of the query as its
  extra input (``guide_source: retriever_mask``; the retriever trained as in ``jras``): does a gain come from
  retrieval, or from a second network trained on the labels?
- ``two_stage``: the retriever of the ``no_seg_grad`` run of the same seed (trained by its own term only), frozen,
  guides a fresh segmenter (``retriever_weights``, ``freeze_retriever``);
- ``no_seg_grad``: joint training without the segmentation gradient into the retriever (``retriever_seg_grad:
  false``);
- ``simclr``: the old retriever (``configs/retriever_resnet.json``: ResNet + projection head), NT-Xent on two
  augmentations shifted up to 3 px, no segmentation feedback (``contrastive_positives: views``,
  ``contrastive_max_shift: 3``, ``retriever_seg_grad: false``);
- ``jras``: the bundle's defaults (mask-embedding retriever, mask-agreement contrastive step with its Dice + CE,
  segmentation feedback into the retriever);
- ``image_encoder``: J-RAS with the paper's retriever, an image encoder with a projection head
  (``configs/retriever_resnet.json``), trained with the same mask-agreement targets and segmentation feedback;
- ``scanner_views``, ``scanner_views_strong``: J-RAS whose retriever views also get a scanner-like contrast curve
  and bias field (``contrastive_view_gamma`` 0.5 / 1.0, ``contrastive_view_bias`` 0.3 / 0.5);
- ``capacity_scanner_views_strong``: the capacity control of ``scanner_views_strong`` (its retriever, trained with
  the same views, gives its coarse mask and no guides): does a gain of the scanner-like views come from retrieval?
- ``candidates_64``: J-RAS with twice the gallery candidates per contrastive step (``contrastive_candidates``);
- ``oracle``: guides chosen by the query's own mask (``guide_source: oracle``) — the upper bound of any retriever:
  do guides help this segmenter at all?

in three regimes on the synthetic cardiac set (``make_synthetic_acdc`` with ``--difficulty``): ``current`` (the
bundle's split of ``--n_patients`` patients, ``--epochs``), ``few`` (``--few_fraction`` of them for training, the
rest mostly test, ``--few_epochs`` so that the small set still gets about a hundred updates) and ``shift`` (the
``current`` models tested on a second set from scanner ``B``: other contrast, bias, noise and resolution). Each cell
is the mean ± std over ``--seeds``; every run's result is kept as ``result_<regime>.json`` under ``--out``, so an
interrupted benchmark resumes where it stopped. Each run is also evaluated on the validation patients of its
regime's data (``validation_<regime>.json``: the ``val ...`` columns): settings are chosen on those, never on the
test patients. ``--collect`` makes, trains and evaluates nothing: it reads the runs finished so far (a benchmark
split over several processes or sessions), lists those not done yet and the rows the results file keeps as done
elsewhere (another run folder or machine), and writes the table of the rest, each row with its own seeds, training
minutes and how its runs were measured (commit, bundle version, date: each run keeps its own in ``trained.json``); a
run trained for other epochs than the command's ends it, naming the run. The validation
curves of the backbone alone (``none``: validation mean Dice at each validation epoch of its training, from the
run's TensorBoard events) go to a second table, ``jras_retrieval_<difficulty>_curves``: has the baseline converged
in the epochs given? Extra ``--key value`` options are config overrides (e.g. ``--image_size 64``).

The table (a row per regime, backbone and variant, with the command, commit, bundle version and versions that
measured it) goes to ``benchmarks/results/jras_retrieval_<difficulty>.json`` (``--results_dir`` another folder), which
the J-RAS docs render (``python benchmarks/results.py``); runs with the same settings fill one table.

    python benchmarks/jras_retrieval.py --out runs/jras_benchmark --epochs 10 --seeds 0,1,2
    python benchmarks/jras_retrieval.py --regimes few --backbones unet --variants none,jras,oracle
    python benchmarks/jras_retrieval.py --difficulty standard --epochs 20 --regimes current --backbones unet \
        --variants none,jras,oracle  # the quick start's set, with the no-retrieval and oracle rows
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from lmseg_components.data import make_synthetic_acdc
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, evaluate_metrics, run_workflow

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.results import RESULTS_DIR, kept_table, provenance, save_results  # noqa: E402
from benchmarks.script import check_overrides, comma_names, comma_seeds, run_script, sample_std  # noqa: E402

STRONG_VIEWS = {"contrastive_view_gamma": 1.0, "contrastive_view_bias": 0.5}  # scanner_views_strong and its control
VARIANTS = {  # name -> (config overlays after train.json and small.json, overrides)
    "none": ((), {"use_retrieval": False}),
    "capacity": ((), {"guide_source": "retriever_mask"}),
    "two_stage": ((), {"freeze_retriever": True, "retriever_seg_grad": False}),  # + the stage-1 retriever's weights
    "no_seg_grad": ((), {"retriever_seg_grad": False}),
    "simclr": (
        ("retriever_resnet.json",),
        {"contrastive_positives": "views", "retriever_seg_grad": False, "contrastive_max_shift": 3},
    ),
    "jras": ((), {}),
    "image_encoder": (("retriever_resnet.json",), {}),
    "scanner_views": ((), {"contrastive_view_gamma": 0.5, "contrastive_view_bias": 0.3}),
    "scanner_views_strong": ((), STRONG_VIEWS),
    "capacity_scanner_views_strong": ((), {"guide_source": "retriever_mask", **STRONG_VIEWS}),
    "candidates_64": ((), {"contrastive_candidates": 64}),
    "oracle": ((), {"guide_source": "oracle"}),
}
REGIMES = ("current", "few", "shift")
COLUMNS = {  # metric key in evaluate.json's output -> column title (ACDC protocol: per 3D frame, HD95 in mm)
    "frame_mean_dice": "Dice",
    "frame_mean_hd95": "HD95 mm",
    "retrieval_hit_rate": "hit rate",
    "retrieval_mask_dice": "guide Dice",
}
JUDGED = {  # the validator's other RetrievalHitRate judges, on the same queries; then the validation patients'
    "oracle_retrieval_hit_rate": "oracle hit rate",
    "random_retrieval_hit_rate": "random hit rate",
    "validation_frame_mean_dice": "val Dice",
    "validation_retrieval_hit_rate": "val hit rate",
    "validation_oracle_retrieval_hit_rate": "val oracle hit rate",
}
PAIRED = [  # (variant, baseline) of one regime and backbone, compared seed by seed
    *((variant, "none") for variant in VARIANTS if variant != "none"),
    ("jras", "capacity"),
    ("jras", "no_seg_grad"),
    ("jras", "two_stage"),
    ("image_encoder", "jras"),
    ("scanner_views", "jras"),
    ("scanner_views_strong", "jras"),
    ("scanner_views_strong", "capacity_scanner_views_strong"),
    ("candidates_64", "jras"),
]
VALIDATION = "$@read_split(@dataset_dir, 'val', @split_fractions, @split_seed)"  # evaluate.json's datalist, 'val'


def _dataset(root: Path, scanner: str, seed: int, n_patients: int, difficulty: str, make: bool = True) -> Path:
    """The synthetic set of ``scanner`` under ``root``, made first unless it is there (or ``make`` is off)."""
    folder = root / f"acdc_{difficulty}_{scanner}"
    marker = folder / "synthetic.json"
    if make and not marker.is_file():
        summary = make_synthetic_acdc(folder, seed=seed, n_patients=n_patients, difficulty=difficulty, scanner=scanner)
        marker.write_text(json.dumps(summary, indent=1))
    return folder


def run(
    out: str = "runs/jras_benchmark",
    epochs: int = 10,
    seeds: str | int | tuple = "0,1,2",
    n_patients: int = 20,
    difficulty: str = "hard",
    few_fraction: float = 0.15,
    few_epochs: int = 40,
    backbones: str | tuple = "unet,segformer",
    variants: str | tuple | None = None,
    regimes: str | tuple | None = None,
    device: str = "cpu",
    num_workers: int = 2,
    results_dir: str = str(RESULTS_DIR),
    collect: bool = False,
    **overrides,
) -> dict:
    started = time.perf_counter()
    try:
        device_config = device_expression(device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    variant_names = comma_names(variants, VARIANTS, "variants")
    regime_names = comma_names(regimes, REGIMES, "regimes")
    backbone_names = comma_names(backbones, ("unet", "segformer"), "backbones")
    if not 0 < few_fraction < 0.8:
        raise SystemExit(f"--few_fraction must be in (0, 0.8), got {few_fraction}")
    configs = ["train.json", SMALL_CONFIG, "evaluate.json", "retriever_resnet.json"]
    check_overrides(overrides, ["jras_segmentation"], configs)
    root, bundle = Path(out).resolve(), bundle_dir("jras_segmentation")
    data_a = _dataset(root / "data", "A", 0, n_patients, difficulty, make=not collect)
    shift = "shift" in regime_names
    data_b = _dataset(root / "data", "B", 1, n_patients, difficulty, make=not collect) if shift else None
    splits = {"current": None, "few": [few_fraction, 0.1, round(0.9 - few_fraction, 6)]}
    results: dict[tuple[str, str, str], list[dict]] = {}
    curves: dict[tuple[str, str, str], list[dict]] = {}
    measured_runs: dict[tuple[str, str, str], list[dict]] = {}  # with --collect: how each run was measured
    not_done: dict[str, list[int]] = {}  # "regime backbone variant" -> its seeds not done yet
    for regime in regime_names:
        trained_in = "current" if regime == "shift" else regime  # shift tests the current models on scanner B
        for backbone in backbone_names:
            for variant in variant_names:
                overlays, variant_overrides = VARIANTS[variant]
                for seed in comma_seeds(seeds):
                    run_dir = root / "runs" / trained_in / backbone / variant / f"seed{seed}"
                    common = {
                        "bundle_root": str(run_dir),
                        "dataset_dir": str(data_a),
                        "backbone": backbone,
                        "seed": seed,
                        "device": device_config,
                        "num_workers": num_workers,
                        **({"split_fractions": splits[trained_in]} if splits[trained_in] else {}),
                        **overrides,
                        **variant_overrides,
                    }
                    result_file = run_dir / f"result_{regime}.json"
                    validation_file = run_dir / f"validation_{regime}.json"
                    if collect and not (result_file.is_file() and validation_file.is_file()):
                        not_done.setdefault(f"{regime} {backbone} {variant}", []).append(seed)
                        continue
                    budget = few_epochs if trained_in == "few" else epochs
                    if collect:
                        recorded = _finished(run_dir, budget)
                        measured_runs.setdefault((regime, backbone, variant), []).append(recorded)
                    elif variant == "two_stage":  # stage 1: the no_seg_grad run's retriever (trained if missing)
                        stage_one = run_dir.parent.parent / "no_seg_grad" / f"seed{seed}"
                        first = {**common, "bundle_root": str(stage_one), **VARIANTS["no_seg_grad"][1]}
                        first.pop("freeze_retriever")
                        _train(bundle, stage_one, (), first, budget, device)
                        common["retriever_weights"] = str(stage_one / "models" / "model.pt")
                    tested = {**common, **({"dataset_dir": str(data_b)} if regime == "shift" else {})}
                    if not result_file.is_file():
                        minutes = _train(bundle, run_dir, overlays, common, budget, device)
                        result = _metrics(bundle, tested, overlays)
                        result_file.write_text(json.dumps({**result, "train_minutes": minutes}, indent=1))
                    if not validation_file.is_file():
                        validation = {
                            **tested,
                            "validate#datalist": VALIDATION,
                            "output_dir": str(run_dir / "eval" / f"validation_{regime}"),
                        }
                        kept = _metrics(bundle, validation, overlays, prefix="validation_")
                        validation_file.write_text(json.dumps(kept, indent=1))
                    result = {
                        **json.loads(result_file.read_text()),
                        **json.loads(validation_file.read_text()),
                        "seed": seed,
                    }
                    results.setdefault((regime, backbone, variant), []).append(result)
                    if variant == "none" and regime != "shift":  # shift tests the current models: the same curve
                        curve = _validation_curve(run_dir, budget)
                        if curve:
                            curves.setdefault((trained_in, backbone, variant), []).append({**curve, "seed": seed})
                    print(
                        f"[{regime} {backbone} {variant} seed {seed}] "
                        + ", ".join(f"{t} {result.get(k, float('nan')):.3f}" for k, t in COLUMNS.items()),
                        flush=True,
                    )
    settings = {
        "epochs": [epochs, few_epochs],
        "data": [difficulty, n_patients, few_fraction],
        "overrides": overrides,
    }
    columns = list({**COLUMNS, **JUDGED}.items())
    path = Path(results_dir) / f"jras_retrieval_{difficulty}.json"
    if not_done:
        held = (kept_table(path, settings, columns) or {}).get("variants", {})
        absent = not_done.keys() - {" ".join(k) for k in results}  # save_results keeps such rows of equal settings
        kept = {row: [r["seed"] for r in held[row]["seeds"]] for row in sorted(absent) if row in held}
        if kept:
            print(f"kept from {path.name}, done elsewhere ({len(kept)} rows): {_seed_lists(kept)}", flush=True)
        left = {row: seeds for row, seeds in not_done.items() if row not in kept}
        if left:
            count = sum(map(len, left.values()))
            print(f"not done yet ({count} runs, left out of the table): {_seed_lists(left)}", flush=True)
    if not results:
        raise SystemExit(f"--collect: no finished run under {root / 'runs'} for these settings")
    _print_table(results, (epochs, few_epochs), seeds, difficulty, n_patients, few_fraction, overrides, device)
    caption = (
        f"J-RAS on the synthetic cardiac set ({difficulty}, {n_patients} patients; `few`: {few_fraction:.0%} of them "
        f"for training; `shift`: the `current` models tested on scanner B), {epochs} epochs ({few_epochs} in `few`), "
        f"overrides {overrides or 'none'}: per-frame Dice and HD95 (mm), the top-1 hit rate and guide mask Dice of "
        "each row's own guides, and the hit rates of an oracle and a random retriever on the same queries; the "
        "`val` columns: the validation patients of the same data (where settings are chosen)."
    )
    rows = {" ".join(k): v for k, v in results.items()}
    measured = provenance("jras_segmentation", device, comma_seeds(seeds), started)
    cells = dict.fromkeys((regime, backbone) for regime, backbone, _ in results)
    paired = [(f"{r} {b} {v}", f"{r} {b} {w}") for r, b in cells for v, w in PAIRED]
    by_variant = None
    if collect:  # each row as its runs were done: its own seeds, the minutes its training took, their provenance
        by_variant = {
            " ".join(key): {
                **_merged(measured_runs[key], measured),
                "seeds": [run["seed"] for run in seed_rows],
                "wall_minutes": round(sum(run.get("train_minutes", 0.0) for run in seed_rows), 1),
            }
            for key, seed_rows in results.items()
        }
    path = save_results(
        f"jras_retrieval_{difficulty}",
        rows,
        columns,
        measured,
        caption,
        settings,
        Path(results_dir),
        paired,
        measured_by_variant=by_variant,
    )
    print(f"result: {path}")
    if curves:
        name = f"jras_retrieval_{difficulty}_curves"
        epochs_seen = {
            int(k.rsplit("_", 1)[1]) for seed_rows in curves.values() for r in seed_rows for k in r if k != "seed"
        }
        path = Path(results_dir) / f"{name}.json"
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        if earlier.get("settings") == settings:
            # another regime's rows stay in the table: its epochs stay columns (save_results keeps rows of equal
            # settings and columns only)
            epochs_seen |= {int(key.rsplit("_", 1)[1]) for key, _ in earlier["columns"]}
        path = save_results(
            name,
            {" ".join(k): v for k, v in curves.items()},
            [(f"val_dice_epoch_{e}", f"epoch {e}") for e in sorted(epochs_seen)],
            measured,
            "The validator's mean Dice on the validation patients during the training of the backbone alone, at each "
            f"validation epoch: has it converged in the epochs given ({epochs}; {few_epochs} in `few`)?",
            settings,
            Path(results_dir),
            measured_by_variant={" ".join(k): by_variant[" ".join(k)] for k in curves} if by_variant else None,
        )
        print(f"result: {path}")
    return {"|".join(k): v for k, v in results.items()}


def _seed_lists(rows: dict[str, list[int]]) -> str:
    """``{"current unet jras": [1, 2]}`` -> ``current unet jras seeds 1,2`` (rows joined by "; ")."""
    return "; ".join(f"{row} seeds {','.join(map(str, seeds))}" for row, seeds in rows.items())


def _train(bundle: Path, run_dir: Path, overlays: tuple, common: dict, epochs: int, device: str) -> float:
    """Train one variant once (``trained.json`` marks a finished run with its epochs, minutes and
    :func:`~benchmarks.results.provenance`; an interrupted one resumes from its checkpoint); the minutes its
    training took."""
    marker = run_dir / "trained.json"
    if not marker.is_file():
        start = time.perf_counter()
        configs = ["train.json", SMALL_CONFIG, *overlays]
        run_workflow(bundle, "training", configs, {**common, "epochs": epochs}, logging_conf=False)
        measured = provenance("jras_segmentation", device, [common["seed"]], start)
        minutes = (time.perf_counter() - start) / 60
        marker.write_text(json.dumps({"epochs": epochs, "minutes": minutes, "measured": measured}, indent=1))
    return json.loads(marker.read_text())["minutes"]


NOT_RECORDED = "not recorded"  # a run trained before trained.json kept its provenance
PROVENANCE_KEYS = ("commit", "bundle_version", "torch", "monai", "python", "device")


def _finished(run_dir: Path, epochs: int) -> dict:
    """How the finished run in ``run_dir`` was measured (its ``trained.json``; ``not recorded`` fields for a run
    older than that), after checking that it trained ``epochs`` epochs.

    Raises:
        SystemExit: the run trained for other epochs (naming its ``trained.json``).
    """
    marker = run_dir / "trained.json"
    trained = json.loads(marker.read_text()) if marker.is_file() else {}
    if trained.get("epochs", epochs) != epochs:
        raise SystemExit(f"{marker}: trained {trained['epochs']} epochs, not the {epochs} of this command")
    recorded = trained.get("measured", {})
    return {key: recorded.get(key, NOT_RECORDED) for key in (*PROVENANCE_KEYS, "date")}


def _merged(runs: list[dict], collected: dict) -> dict:
    """One row's provenance from those of its runs: each field's distinct values joined (``a, b``), the dates as
    a range; command, bundle and device of the collecting invocation."""
    merged = dict(collected)
    for key in PROVENANCE_KEYS:
        merged[key] = ", ".join(sorted({str(run[key]) for run in runs}))
    dates = sorted({run["date"] for run in runs} - {NOT_RECORDED})
    span = [dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"] if dates else []
    merged["date"] = ", ".join(span + [NOT_RECORDED] * any(run["date"] == NOT_RECORDED for run in runs))
    return merged


def _validation_curve(run_dir: Path, epochs: int) -> dict[str, float]:
    """``val_dice_epoch_<N>``: the validation mean Dice the run's training logged at epoch N <= ``epochs`` (its
    TensorBoard events under ``eval/tensorboard``). A resumed run logs again from its checkpoint's epoch: the value
    logged last for an epoch is the one kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run_dir / "eval" / "tensorboard"
    if not folder.is_dir():
        return {}
    events = EventAccumulator(str(folder)).Reload()
    if "val_mean_dice" not in events.Tags()["scalars"]:
        return {}
    return {f"val_dice_epoch_{e.step}": float(e.value) for e in events.Scalars("val_mean_dice") if e.step <= epochs}


def _metrics(bundle: Path, overrides: dict, overlays: tuple, prefix: str = "") -> dict[str, float]:
    """The numbers ``evaluate.json`` reports for the trained run of ``overrides``, their keys with ``prefix``."""
    metrics = evaluate_metrics(bundle, overrides, overlays=(SMALL_CONFIG, *overlays))
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _print_table(results, epochs, seeds, difficulty, n_patients, few_fraction, overrides, device) -> None:
    print(
        f"\nJ-RAS benchmark: synthetic cardiac set ({difficulty}, {n_patients} patients; few = {few_fraction:.0%} "
        f"for training; shift = trained on scanner A, tested on B), {epochs[0]} epochs ({epochs[1]} in few), seeds "
        f"{seeds}, overrides "
        f"{overrides}, device {device}; mean ± sample std over seeds"
    )
    header = f"{'regime':<8} {'backbone':<10} {'guides':<13} | " + " | ".join(f"{t:>13}" for t in COLUMNS.values())
    print(header)
    print("-" * len(header))
    for (regime, backbone, variant), rows in results.items():
        cells = []
        for key in COLUMNS:
            values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            cells.append("—".rjust(13) if np.isnan(values).all() else f"{values.mean():.3f} ± {sample_std(values):.3f}")
        print(f"{regime:<8} {backbone:<10} {variant:<13} | " + " | ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    run_script(run, __doc__)
