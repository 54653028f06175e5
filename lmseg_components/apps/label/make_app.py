"""``lmseg label-app``: write a MONAI Label app folder that serves this checkout's bundles locally."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from lmseg_components.files import prepare_output_dir
from lmseg_components.inference.predictor import takes_text
from lmseg_components.inference.retrieval import bank_files
from lmseg_components.runs import trained_overrides
from lmseg_components.workflows import BUNDLES_DIR, copy_bundle

__all__ = ["make_label_app"]

MAIN_PY = '''"""MONAI Label app for lmseg bundles (written by `lmseg label-app`).

    monailabel start_server --app {app} --studies /path/to/images --conf models {models}
"""

from lmseg_components.apps.label.app import LmsegLabelApp


class LmsegApp(LmsegLabelApp):
    """The app class MONAI Label loads from this file."""
'''


def make_label_app(
    out: str | Path,
    bundles: Sequence[str] = ("tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs"),
    models: Mapping[str, str] | None = None,
    bundles_dir: str | Path | None = None,
    overrides: Mapping[str, Mapping] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<out>/main.py`` and copy each bundle to ``<out>/model/<name>`` (configs, docs, LICENSE).

    Args:
        out: the app folder: new or empty unless ``overwrite``; never one that is, holds or lies inside a bundle
            or a checkpoint it copies.
        bundles: bundle names under ``bundles_dir`` (default: this checkout's ``bundles/``).
        models: bundle name -> trained checkpoint to install as ``models/model.pt`` (default: the bundle's own
            ``models/model.pt`` when it has one), with the files beside it that it needs (J-RAS: ``gallery.pt``,
            ``index.pt`` and ``user_gallery.pt``; ``run_record.json``). A bundle without a checkpoint is copied but
            not served.
        bundles_dir: where the bundles live.
        overrides: bundle name -> top-level config values (e.g. ``{"tirnet_lmis": {"device": "cpu"}}``), written
            into the copied ``configs/inference.json`` with the values the checkpoint was trained with (read from
            the ``run_record.json`` beside it; an override that contradicts one is refused).
        overwrite: write into a non-empty ``out``: the app's files replace those of the same names, nothing is
            deleted.

    Returns:
        the app folder.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false.
        ValueError: ``out`` overlaps a bundle or checkpoint, or the arguments do not match ``bundles``.
        FileNotFoundError: a bundle or a given checkpoint does not exist.
    """
    source = Path(bundles_dir) if bundles_dir else BUNDLES_DIR
    models, overrides = dict(models or {}), dict(overrides or {})
    unknown = sorted((set(models) | set(overrides)) - set(bundles))
    if unknown:
        raise ValueError(f"models or overrides given for {unknown}, which are not in bundles {list(bundles)}")
    odd = sorted(name for name, values in overrides.items() if not isinstance(values, Mapping))
    if odd:
        raise ValueError(f"overrides for {odd} must map config ids to values, e.g. {{'width': 8}}")
    checkpoints = {}
    for name in bundles:
        bundle = source / name
        if not (bundle / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"{bundle}: not a bundle (no configs/inference.json)")
        checkpoints[name] = Path(models[name]) if name in models else bundle / "models" / "model.pt"
        if name in models and not checkpoints[name].is_file():
            raise FileNotFoundError(f"checkpoint for {name} not found: {checkpoints[name]}")
    # J-RAS's memory bank and the run record travel with the checkpoint (a J-RAS bundle without its bank is refused)
    extras = {
        name: bank_files(checkpoint, name, required=not takes_text(source / name)) if checkpoint.is_file() else []
        for name, checkpoint in checkpoints.items()
    }
    inputs = [source / name for name in bundles] + [Path(models[name]) for name in models]
    out = prepare_output_dir(out, overwrite, sources=inputs)
    for name, checkpoint in checkpoints.items():
        values = dict(overrides.get(name, {}))
        if checkpoint.is_file():  # the values it was trained with (run_record.json beside it)
            values = trained_overrides(source / name, ["inference.json"], checkpoint.parent, values)
        target = copy_bundle(source / name, out / "model" / name, {"inference.json": values}, overwrite=overwrite)
        if checkpoint.is_file():
            (target / "models").mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint, target / "models" / "model.pt")
            for path in extras[name]:
                shutil.copy2(path, target / "models" / path.name)
    (out / "main.py").write_text(MAIN_PY.format(app=out, models=",".join(bundles)))
    return out
