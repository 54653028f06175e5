"""``lmseg segment``, ``serve``, ``export``, ``publish`` and ``jras-bank``: what a user does with a trained model."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["export", "jras_bank", "publish", "segment", "serve"]


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
