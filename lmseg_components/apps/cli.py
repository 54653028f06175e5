"""The ``lmseg`` command line: ``make-synthetic``, ``check-data``, ``demo``, ``segment``, ``serve``,
``verify-bundles``, ``export``, ``publish``, ``label-app``, ``deploy-app``, ``jras-bank``.

:func:`main` answers ``--help`` / ``--version`` and refuses an unknown command or option (naming the closest
valid one) with the standard library alone, then hands the command to python-fire; each command imports torch
and MONAI only when it runs.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "make_synthetic",
    "check_data",
    "demo",
    "segment",
    "serve",
    "verify_bundles",
    "export",
    "label_app",
    "main",
    "run_script",
]

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
    try:
        prepare_output_dir(out, overwrite)
    except (ValueError, FileExistsError) as e:
        sys.exit(f"error: {e}")
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


def verify_bundles(bundles_dir: str | None = None, settings_file: str | None = None, checks=None) -> None:
    """Run the Model-Zoo-style checks on every bundle and print a bundle x check table; exit 1 on any failure.

    Args:
        bundles_dir: folder of bundles (default: ``bundles/`` of this checkout).
        settings_file: per-bundle CI settings (default: ``ci/bundles.json``).
        checks: a comma-separated subset, e.g. ``files,metadata,json_style``.
    """
    from lmseg_components.apps.bundle_checks import verify_bundles as run_checks

    selected = checks.split(",") if isinstance(checks, str) else checks
    sys.exit(run_checks(bundles_dir, settings_file, selected))


def segment(
    *images: str,
    bundle: str | None = None,
    model: str | None = None,
    text: str | None = None,
    prompts: str | None = None,
    out: str = "masks",
    device: str | None = None,
    overwrite: bool = False,
    **overrides,
) -> None:
    """Segment your own images with your own words: a trained text bundle on image files, in one command (or J-RAS
    with its memory bank: ``lmseg segment --bundle jras_segmentation --model runs/j/models/model.pt
    patient101_frame01.nii.gz``, one label volume per frame, ``results.json`` with each structure in mL and the
    gallery cases that guided each slice).

    ``lmseg segment --bundle tirnet_lmis --model runs/x/models/model.pt chest.png --text "Bilateral pulmonary
    infection, two infected areas, lower left lung and lower right lung." --out masks/``. Writes, per image, the
    mask on the input's own grid (PNG at its size, or NIfTI on its grid and affine), an overlay PNG with the
    prompt as caption, and ``results.json`` (prompt, mask, foreground fraction, empty, the presence ``score`` and
    ``found``, inference ms). The config values the model was trained with, and the presence threshold chosen when
    it was trained, come from ``run_record.json`` beside it (``--presence_threshold 0.5`` replaces the threshold;
    a prompt not found gets an empty mask).

    Args:
        images: image files or folders (PNG, JPEG, DICOM ``.dcm``; NIfTI for ``tgcnet_ct_organs`` and J-RAS's ACDC
            frames; PNG for a J-RAS model trained on BUSI).
        bundle: ``tirnet_lmis``, ``tgcnet_lmis``, ``tgcnet_ct_organs``, ``jras_segmentation`` or a bundle folder.
        model: the trained checkpoint, ``<run>/models/model.pt``.
        text: one prompt for every image.
        prompts: ``prompts.json`` (``{"image.png": "prompt", "default": "..."}``) or ``prompts.csv`` (columns
            ``image,text``); default the one in the images' folder. ``tgcnet_ct_organs`` prompts all its organs
            when an image has none.
        out: the output folder: new or empty (see ``overwrite``).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default CUDA when available).
        overwrite: write into a non-empty ``out`` (files of the same names are replaced, others stay).
        overrides: other bundle config values, e.g. ``--text_cache_dir /tmp/cache``.
    """
    if not images or bundle is None or model is None:
        sys.exit(
            "error: give --bundle, --model and at least one image, e.g. lmseg segment --bundle tirnet_lmis "
            '--model runs/x/models/model.pt image.png --text "..."'
        )
    from lmseg_components.apps.segment import RESULTS_FILE
    from lmseg_components.apps.segment import segment as run

    try:
        results = run(list(images), bundle, model, out, text, prompts, device, overwrite, overrides)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    for r in results:
        mask = "empty mask" if r["empty"] else f"foreground {r['foreground_fraction']:.1%}"
        what = _structures(r) if "structures" in r else f"{_decision(r)}, {mask}"
        print(f"{Path(r['image']).name}: {r['mask']} ({what}, {r['inference_ms']:.0f} ms)")
    print(f"masks, overlays and {RESULTS_FILE} in {Path(out).resolve()}")


def _structures(result: dict) -> str:
    """J-RAS's ``results.json`` entry in a few words: each structure's volume (mL) or pixels, and the gallery cases
    of the slices' best guides."""
    sizes = [
        f"{name} {v['ml']:.1f} mL" if "ml" in v else f"{name} {v['voxels']} px"
        for name, v in result["structures"].items()
    ]
    cases = dict.fromkeys(s["guides"][0]["case_id"] for s in result["slices"] if s["guides"])
    return ", ".join(sizes) + (f"; guided by {', '.join(cases)}" if cases else "")


def _decision(result: dict) -> str:
    """The presence decision of a ``results.json`` entry in a few words."""
    found, score = result["found"], result["score"]
    if isinstance(found, list):
        return f"{sum(found)} of {len(found)} prompts found"
    if isinstance(score, list):
        return f"scores {', '.join(f'{s:.2f}' for s in score)}"
    return f"score {score:.2f}" if found is None else f"{'found' if found else 'not found'}, score {score:.2f}"


def serve(
    model: str,
    bundle: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    device: str | None = None,
    **overrides,
) -> None:
    """Try a trained model in your browser: a local web page to upload an image, type prompts and see the overlays.

    ``lmseg serve --model runs/demo/models/model.pt``, then open http://127.0.0.1:8765/: upload a PNG, JPEG, DICOM
    or (CT and cardiac bundles) NIfTI file, type one prompt per line, and see each prompt's overlay side by side
    (a slice slider for volumes); download each mask and results.json. The masks are those lmseg segment writes.
    Ctrl-C stops it.

    Args:
        model: the trained checkpoint, ``<run>/models/model.pt`` (its ``run_record.json`` beside it).
        bundle: the bundle that trained it (default: told from the run record).
        host: the address to listen on; the default serves this machine only (another address lets others
            on the network upload images: do so only on a network you trust).
        port: the port (0: a free one; the address is printed).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default CUDA when available).
        overrides: other bundle config values, e.g. ``--text_cache_dir /tmp/cache``.
    """
    from lmseg_components.apps.serve import SegmentService, make_server
    from lmseg_components.apps.serve.server import is_local

    try:
        service = SegmentService(model, bundle, device, overrides)
        server = make_server(service, host, port)
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    address, bound = server.server_address[:2]
    where = f"http://{address if ':' not in address else f'[{address}]'}:{bound}/"
    if not is_local(host):
        print(f"warning: listening on {host}: anyone who can reach this machine can upload images", file=sys.stderr)
    print(f"lmseg serve: {service.name} ({model}) at {where} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def export(
    bundle: str,
    ckpt: str | None = None,
    out: str | None = None,
    overwrite: bool = False,
    format: str = "pt2",
    **overrides,
) -> None:
    """Export a bundle's trained network with ``torch.export`` to ``<bundle_root>/models/model.pt2``, or to ONNX
    (``--format onnx``: ``model.onnx``, for onnxruntime, TensorRT or Triton).

    ``pt2`` serves networks TorchScript cannot script (TGC-Net). The config values the model was trained with
    (image size, network settings) are read from the run record beside the checkpoint; other config values
    are overridable as in ``monai.bundle``, e.g. ``lmseg export bundles/tgcnet_lmis --bundle_root runs/tgc``, and
    an override that contradicts a trained value is refused. Run the program with
    ``configs/inference_exported.json`` (ONNX: ``configs/inference_onnx.json``) merged over
    ``configs/inference.json``, or ``lmseg segment --model model.onnx``.

    Args:
        bundle: the bundle folder.
        ckpt: the checkpoint (default ``<bundle_root>/models/model.pt``).
        out: the exported file (default ``<bundle_root>/models/model.<format>``).
        overwrite: replace an existing exported file.
        format: ``pt2`` (``torch.export``) or ``onnx`` (needs ``pip install -e ".[onnx]"``).
    """
    from lmseg_components.export import export_bundle

    try:
        path = export_bundle(bundle, ckpt, out, overrides, overwrite=overwrite, format=format)
    except (ValueError, FileExistsError, ImportError) as e:
        sys.exit(f"error: {e}")
    print(f"exported to {path}")


def publish(bundle: str, run: str, out: str, url: str, overwrite: bool = False) -> None:
    """Turn a trained run into a bundle folder others can download and run as it is.

    ``lmseg publish --bundle tirnet_lmis --run runs/x --out shared/tirnet_lmis --url https://your.host/model.pt``:
    the bundle's configs with the values the model was trained with, ``models/model.pt`` and its
    ``run_record.json``, ``large_files.yml`` with the checkpoint's SHA-256 at ``url``, and ``docs/MODEL_CARD.md``
    (training values, dataset fingerprint, the run's ``eval/metrics.csv``).

    Args:
        bundle: the bundle the run was trained from: a name (``tirnet_lmis``) or a folder.
        run: the run's ``bundle_root``.
        out: the folder to write: new or empty (see ``overwrite``).
        url: where you host ``models/model.pt``: lmseg never makes one up.
        overwrite: write into a non-empty ``out``.
    """
    from lmseg_components.apps.publish import MODEL_CARD
    from lmseg_components.apps.publish import publish as run_publish
    from lmseg_components.inference import find_bundle

    try:
        folder = run_publish(find_bundle(bundle), run, out, url, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    print(f"published to {folder} (model card: {folder / MODEL_CARD}); upload models/model.pt to {url}")


def label_app(
    out: str,
    bundles: str | tuple = "tirnet_lmis,tgcnet_lmis,tgcnet_ct_organs",
    overrides: dict | None = None,
    overwrite: bool = False,
    **models: str,
) -> None:
    """Write a MONAI Label app folder serving this checkout's bundles locally (no Model Zoo download).

    ``lmseg label-app --out apps/lmseg --bundles tirnet_lmis --tirnet_lmis runs/tirnet/models/model.pt``, then
    ``monailabel start_server --app apps/lmseg --studies /data/images --conf models tirnet_lmis``; infer with
    ``POST /infer/tirnet_lmis?image=<id>`` and form field ``params={"text": "..."}``. J-RAS
    (``--bundles jras_segmentation --jras_segmentation runs/j/models/model.pt``) is served with the memory bank
    beside its checkpoint; ``PUT /datastore/label`` adds a saved label to that bank. Needs ``lmseg[label]``.

    Args:
        out: the app folder: new or empty (see ``overwrite``).
        bundles: comma-separated bundle names.
        overrides: bundle -> other config values, e.g. ``--overrides '{"tirnet_lmis": {"device": "cpu"}}'``; the
            values a checkpoint was trained with come from the ``run_record.json`` beside it.
        overwrite: write into a non-empty ``out`` (files of the same names are replaced, others stay).
        models: ``--<bundle> <checkpoint>``: the trained ``model.pt`` to serve (default: the bundle's own).
    """
    from lmseg_components.apps.label import make_label_app

    names = bundles.split(",") if isinstance(bundles, str) else list(bundles)
    try:
        app = make_label_app(out, names, models, overrides=overrides, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    served = [n for n in names if (app / "model" / n / "models" / "model.pt").is_file()]
    print(f"MONAI Label app written to {app}; bundles with a checkpoint (served): {served or 'none'}")
    print(f"start: monailabel start_server --app {app} --studies <images> --conf models {','.join(served)}")


def deploy_app(out: str, bundle: str, model: str | None = None, overwrite: bool = False, **overrides) -> None:
    """Write a MONAI Deploy application folder for an exported bundle (``app.py``, ``app.yaml``, ``models/``).

    ``lmseg deploy-app --out apps/tgc --bundle bundles/tgcnet_lmis --model runs/tgc/models/model.pt2`` (the
    config values the model was trained with come from the ``run_record.json`` beside it), then
    ``python apps/tgc/app.py -i <input> -o <output> -m apps/tgc/models`` (needs ``lmseg[deploy]``), or build the
    MAP with ``monai-deploy package`` (needs Docker).

    Args:
        out: the application folder: new or empty (see ``overwrite``); never one that holds the bundle, the model
            or ``lmseg_components`` (e.g. not the repository root).
        bundle: the bundle folder (``configs/inference_exported.json``; J-RAS: ``configs/inference.json``).
        model: the exported network: ``model.pt2`` (``lmseg export``) or ``model.ts`` (``ckpt_export``);
            default the bundle's own ``models/`` file. J-RAS: the trained ``model.pt`` with its memory bank
            (``gallery.pt``, ``index.pt``, ``user_gallery.pt``) beside it.
        overwrite: write into a non-empty ``out`` (files of the same names are replaced, others stay).
        overrides: other top-level config values, e.g. ``--device cpu``.
    """
    from lmseg_components.apps.deploy import make_deploy_app
    from lmseg_components.inference.predictor import takes_text

    try:
        app = make_deploy_app(out, bundle, model, overrides, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    print(f"MONAI Deploy app written to {app}")
    inputs = "image or folder with prompts.json" if takes_text(bundle) else "frame, image or folder"
    print(f"run:     python {app}/app.py -i <{inputs}> -o <output> -m {app}/models")
    print(f"package: monai-deploy package {app} -c {app}/app.yaml -m {app}/models -t <tag> --platform x86_64")


def jras_bank(
    action: str,
    bundle_root: str,
    dataset_dir: str | None = None,
    case_id=None,
    replace: bool = False,
    config_file: str | None = None,
    **overrides,
) -> None:
    """Add, list or remove the cases of a trained J-RAS bundle's memory bank, or rebuild its index
    (``lmseg_components.apps.bank``): ``lmseg jras-bank add --bundle_root R --dataset_dir D``, ``list
    --bundle_root R``, ``remove --bundle_root R --case_id patient101,patient102``, ``rebuild --bundle_root R``."""
    from lmseg_components.apps.bank import jras_bank as run  # lazy: monai.bundle and the engines

    run(action, bundle_root, dataset_dir, case_id, replace, config_file, **overrides)


def run_script(run: Callable[..., object], doc: str | None, command: list[str] | None = None) -> None:
    """The fire entry of a benchmark script whose ``run`` takes config overrides as ``**kwargs``.

    Fire hands ``--help`` / ``-h`` to such a function as the override ``help=True``, which started a two-hour
    benchmark; here they print ``doc`` instead. Positional words are refused before any data is made or model
    trained (fire leaves the second word of ``--seeds 0 1`` over as one). What ``run`` returns is not printed again.

    Args:
        run: the script's ``run(**kwargs)``.
        doc: what ``--help`` prints (the script's ``__doc__``).
        command: the arguments (default: ``sys.argv[1:]``).
    """

    import fire

    def script(*unexpected, **kwargs) -> None:
        if {"help", "h"} & kwargs.keys():
            print(doc)
            return
        if unexpected:
            raise SystemExit(f"unexpected arguments {list(unexpected)}: give lists comma-separated, e.g. --seeds 0,1,2")
        run(**kwargs)

    fire.Fire(script, command=command)


def comma_names(value: str | tuple | list | None, allowed: Iterable[str], what: str) -> list[str]:
    """The names of a benchmark's comma-separated option (all of ``allowed`` when None); unknown ones end the
    script with one line naming them and the choices."""
    allowed = list(allowed)
    chosen = allowed if value is None else value.split(",") if isinstance(value, str) else list(value)
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {allowed}")
    return chosen


def comma_seeds(value: str | int | tuple) -> list[int]:
    """``--seeds 0,1,2`` (fire gives a string, an int or a tuple) as a list of ints."""
    return [int(s) for s in str(value).split(",")] if isinstance(value, str | int) else [int(s) for s in value]


def sample_std(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (0 for a single seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


COMMANDS: dict[str, Callable[..., None]] = {
    "make-synthetic": make_synthetic,
    "check-data": check_data,
    "demo": demo,
    "segment": segment,
    "serve": serve,
    "export": export,
    "publish": publish,
    "label-app": label_app,
    "deploy-app": deploy_app,
    "jras-bank": jras_bank,
    "verify-bundles": verify_bundles,
}
HELP_FLAGS = ("--help", "-h", "help")


def main(argv: list[str] | None = None) -> None:
    """Run one ``lmseg`` command; ``argv`` (default: the process's arguments) as typed after ``lmseg``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in HELP_FLAGS:
        _print(_overview())
        return
    if argv[0] == "--version":
        _print(f"lmseg {importlib.metadata.version('lmseg')}")
        return
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        _refuse(f"unknown command {name!r}", name, COMMANDS, "", "lmseg --help lists the commands")
    command = COMMANDS[name]
    if any(a in HELP_FLAGS for a in args):
        _print(_command_help(name, command))
        return
    _check_options(name, command, args)
    _quiet_third_party()
    import fire

    fire.Fire(command, command=args, name=f"lmseg {name}")


def _print(text: str) -> None:
    """Print ``text``; a reader that stops early (``lmseg segment --help | head``) ends the output, not with a stack."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's final flush goes nowhere


def _quiet_third_party() -> None:
    """Keep the console to what concerns the user's data: notices of optional GPU decoders that are absent, a
    missing patient orientation in a 2-D DICOM (the 2-D bundles need no affine; volumes come as NIfTI) and the
    weight-loading bar of Hugging Face encoders say nothing about it."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers on import
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    for message in ("NvImgCodecPydicomReader", "PydicomReader: ImageOrientationPatient"):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def _plain(text: str) -> str:
    """Docstring text as a terminal shows it: ``code`` and :role:`~a.b.Name` without their markup."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _summary(command: Callable) -> str:
    return _plain(inspect.getdoc(command).split("\n\n")[0].replace("\n", " "))


def _overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {_summary(command)}" for name, command in COMMANDS.items()]
    return "\n".join(
        [
            "usage: lmseg COMMAND [options]    (lmseg COMMAND --help: its options; lmseg --version)",
            "",
            "Language-guided and retrieval-augmented segmentation bundles for MONAI.",
            "",
            "commands:",
            *lines,
        ]
    )


def _command_help(name: str, command: Callable) -> str:
    usage = [f"lmseg {name}"]
    for parameter in inspect.signature(command).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            usage.append(f"[{parameter.name.upper()} ...]")
        elif parameter.kind is parameter.VAR_KEYWORD:
            usage.append(f"[--<{'bundle' if name == 'label-app' else 'config id'}> VALUE ...]")
        elif parameter.default is parameter.empty:
            usage.append(f"--{parameter.name} {parameter.name.upper()}")
        else:
            usage.append(f"[--{parameter.name} {parameter.default!r}]")
    return f"usage: {' '.join(usage)}\n\n{_plain(inspect.getdoc(command))}"


def _check_options(name: str, command: Callable, args: list[str]) -> None:
    """Refuse an option the command does not take, naming the closest one it does (python-fire would hand it to
    ``**overrides`` as a config value, or stop with a usage dump). A command with ``**overrides`` takes the config
    ids of its bundle too; ``label-app`` takes ``--<bundle>`` for each bundle it serves."""
    parameters = inspect.signature(command).parameters.values()
    known = {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    known |= {f"no{p.name}" for p in parameters if isinstance(p.default, bool)}  # fire's --noflag
    given = [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--") and len(a) > 2]
    unknown = [flag for flag in given if flag not in known]
    if not unknown:
        return
    takes_more = any(p.kind is p.VAR_KEYWORD for p in parameters)
    extra, what = _extra_options(name, args) if takes_more else (set(), "")
    if extra is None:
        return  # the bundle is not known yet: the command names it
    for flag in unknown:
        if flag not in extra and flag.split("#")[0] not in extra:
            _refuse(f"lmseg {name}: unknown option --{flag}", flag, known | extra, "--", f"lmseg {name} --help{what}")


def _extra_options(name: str, args: list[str]) -> tuple[set[str] | None, str]:
    """The ``**`` options of a command: config ids of its bundle (None where no bundle is given or found) or, for
    ``label-app``, the bundle names it serves."""
    from lmseg_components.locations import TEXT_BUNDLES, bundle_folder, config_ids

    if name == "label-app":
        bundles = _option(args, "bundles") or ",".join(TEXT_BUNDLES)
        return set(bundles.split(",")), ""
    if name == "jras-bank":
        bundle = "jras_segmentation"
    else:
        bundle = _option(args, "bundle") or next((a for a in args if not a.startswith("-")), None)
    folder = bundle_folder(bundle) if bundle else None
    if folder is None:
        return None, ""
    return config_ids(folder), f"; config ids: {folder / 'configs'}"


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name value`` / ``--name=value`` in ``args``."""
    for i, arg in enumerate(args):
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _refuse(message: str, word: str, choices: Iterable[str], prefix: str, hint: str) -> None:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    suggestion = f"; did you mean {prefix}{close[0]}?" if close else ""
    print(f"error: {message}{suggestion} ({hint})", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
