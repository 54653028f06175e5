"""``lmseg label-app`` and ``deploy-app``: a trained bundle served by MONAI Label or packaged for MONAI Deploy."""

from __future__ import annotations

import sys

__all__ = ["deploy_app", "label_app"]


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
