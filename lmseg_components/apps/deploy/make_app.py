"""``lmseg deploy-app``: write a MONAI Deploy application folder (``app.py``, ``__main__.py``, ``app.yaml``,
``requirements.txt``, a copy of ``lmseg_components``) with an exported bundle under ``models/<bundle>``."""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.files import prepare_output_dir
from lmseg_components.inference.predictor import takes_text
from lmseg_components.inference.retrieval import bank_files
from lmseg_components.locations import PACKAGE_DIR
from lmseg_components.runs import check_trained_with, trained_overrides
from lmseg_components.workflows import copy_bundle

__all__ = ["EXPORTED_FILES", "make_deploy_app"]

EXPORTED_FILES = ("model.pt2", "model.ts")

APP_PY = '''"""MONAI Deploy application for the lmseg bundle {bundle} (written by `lmseg deploy-app`).

Run as plain Python:   python app.py -i <{inputs}> -o <output> -m models
Package into a MAP:    monai-deploy package {out} -c {out}/app.yaml -m {out}/models -t lmseg-{bundle}:0.1.0 \\
                           --platform x86_64
"""

from lmseg_components.apps.deploy.app import main

if __name__ == "__main__":
    main(retrieval={retrieval})
'''

MAIN_PY = '''"""Entry point of the packaged application (`python3 <app folder>`)."""

from app import main

main()
'''

APP_YAML = """%YAML 1.2
---
application:
  title: lmseg segmentation ({bundle})
  version: {version}
  inputFormats: ["file"]
  outputFormats: ["file"]

resources:
  cpu: 2
  gpu: 1
  memory: 8Gi
  gpuMemory: 4Gi
"""


def _requirements() -> list[str]:
    """lmseg's runtime requirements plus the ``minilm`` (offline text-encoder weights) and ``deploy`` extras, less
    the packager (``holoscan-cli`` runs on the build machine, not in the MAP)."""
    lines = []
    for req in metadata.requires("lmseg") or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"](\w+)['\"]", marker)
        if spec.startswith("holoscan-cli"):
            continue
        if not marker.strip() or (extra and extra.group(1) in ("minilm", "deploy")):
            lines.append(spec.strip())
    return sorted(set(lines), key=str.lower)


def make_deploy_app(
    out: str | Path,
    bundle: str | Path,
    model: str | Path | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the application folder ``out`` for ``bundle``.

    Args:
        out: the application folder: new or empty unless ``overwrite``; never one that is, holds or lies inside
            ``bundle``, ``model`` or the ``lmseg_components`` package it copies.
        bundle: a bundle folder (``configs/inference_exported.json``; J-RAS: ``configs/inference.json``).
        model: the exported network (``model.pt2`` from ``lmseg export`` or ``model.ts`` from ``ckpt_export``);
            default the bundle's own ``models/model.pt2`` or ``models/model.ts``. J-RAS runs its trained
            ``model.pt`` (default the bundle's own) with the memory bank beside it (``gallery.pt``, ``index.pt``,
            ``user_gallery.pt``) and its ``run_record.json``, all copied into the app.
        overrides: top-level config values, written into the copied ``configs/inference_exported.json`` with the
            values the model was trained with (the ``run_record.json`` beside it, which training writes and
            ``lmseg export`` leaves beside ``model.pt2``; an override that contradicts one is refused).
        overwrite: write into a non-empty ``out``: the app's files replace those of the same names, nothing is
            deleted.

    Returns:
        the application folder.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false.
        ValueError: ``out`` overlaps an input, or the model is not the one the bundle loads.
    """
    bundle = Path(bundle)
    if not takes_text(bundle):
        return _make_retrieval_app(out, bundle, model, overrides, overwrite)
    exported_config = bundle / "configs" / "inference_exported.json"
    if not exported_config.is_file():
        raise FileNotFoundError(f"{bundle}: no configs/inference_exported.json (no exported-network inference)")
    config_text = exported_config.read_text()
    if model is None:
        found = [
            bundle / "models" / n for n in EXPORTED_FILES if n in config_text and (bundle / "models" / n).is_file()
        ]
        if not found:
            raise FileNotFoundError(
                f"{bundle}/models has no exported network ({', '.join(EXPORTED_FILES)}): run `lmseg export` "
                "(or `python -m monai.bundle ckpt_export`) first, or pass --model"
            )
        model = found[0]
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"exported network not found: {model}")
    if model.name not in EXPORTED_FILES or model.name not in config_text:
        loads = [name for name in EXPORTED_FILES if name in config_text]
        raise ValueError(f"{bundle.name}'s inference_exported.json loads {loads}, not {model.name}")
    package = PACKAGE_DIR
    out = prepare_output_dir(out, overwrite, sources=[package, bundle, model])
    values = trained_overrides(bundle, ["inference.json"], model.parent, overrides)  # + run_record.json beside it
    target = copy_bundle(bundle, out / "models" / bundle.name, {"inference_exported.json": values}, overwrite)
    (target / "models").mkdir(exist_ok=True)
    shutil.copy2(model, target / "models" / model.name)
    return _write_app(out, bundle, package, retrieval=False)


def _make_retrieval_app(
    out: str | Path, bundle: Path, model: str | Path | None, overrides: dict | None, overwrite: bool
) -> Path:
    """:func:`make_deploy_app` for J-RAS: the trained checkpoint (default ``<bundle>/models/model.pt``) with the
    memory bank beside it (``gallery.pt``, ``index.pt``; ``user_gallery.pt`` when there is one) and its
    ``run_record.json``; the trained values go into the copied ``configs/inference.json``."""
    model = Path(model) if model is not None else bundle / "models" / "model.pt"
    if not model.is_file():
        raise FileNotFoundError(f"trained checkpoint not found: {model} (train the bundle first, or pass --model)")
    bank = bank_files(model, bundle.name)
    check_checkpoint_file(model)
    check_trained_with(bundle, model.parent)
    package = PACKAGE_DIR
    out = prepare_output_dir(out, overwrite, sources=[package, bundle, model])
    values = trained_overrides(bundle, ["inference.json"], model.parent, overrides)
    target = copy_bundle(bundle, out / "models" / bundle.name, {"inference.json": values}, overwrite)
    (target / "models").mkdir(exist_ok=True)
    shutil.copy2(model, target / "models" / "model.pt")
    for path in bank:
        shutil.copy2(path, target / "models" / path.name)
    return _write_app(out, bundle, package, retrieval=True)


def _write_app(out: Path, bundle: Path, package: Path, retrieval: bool) -> Path:
    """The application's own files and the copy of ``lmseg_components`` in ``out``."""
    shutil.copytree(
        package,
        out / "lmseg_components",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    version = json.loads((bundle / "configs" / "metadata.json").read_text()).get("version", "0.1.0")
    inputs = "frame, image or folder" if retrieval else "image or folder with prompts.json"
    (out / "app.py").write_text(APP_PY.format(bundle=bundle.name, out=out, inputs=inputs, retrieval=retrieval))
    (out / "__main__.py").write_text(MAIN_PY)
    (out / "app.yaml").write_text(APP_YAML.format(bundle=bundle.name, version=version))
    (out / "requirements.txt").write_text("\n".join(_requirements()) + "\n")
    return out
