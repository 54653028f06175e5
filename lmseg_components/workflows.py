"""Run a bundle's workflows in-process (for ``lmseg demo`` and the benchmarks), exactly as
``python -m monai.bundle run <workflow>`` would, with CLI-style overrides."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import SaveImaged

from lmseg_components.devices import is_device_name
from lmseg_components.files import prepare_output_dir
from lmseg_components.locations import BUNDLES_DIR
from lmseg_components.outputs.overlay import SaveOverlayd
from lmseg_components.outputs.presence import SaveResultsd

__all__ = [
    "run_monai_bundle",
    "BUNDLES_DIR",
    "FILE_WRITERS",
    "SMALL_CONFIG",
    "bundle_dir",
    "copy_bundle",
    "device_expression",
    "load_bundle",
    "run_workflow",
    "evaluate_metrics",
]

# every bundle's CPU setting, an overlay on its paper defaults: what the demo, tests, CI and benchmarks load
SMALL_CONFIG = "small.json"
# the bundles' postprocessing transforms that write files; left out where the caller writes (MONAI Label, Deploy)
FILE_WRITERS = (SaveImaged, SaveOverlayd, SaveResultsd)


def device_expression(name: str) -> str:
    """The bundle config value ``$torch.device('<name>')`` for a device name a user gives (``--device``).

    Raises:
        ValueError: ``name`` is not ``cpu``, ``cuda`` or ``cuda:N`` (it would be pasted into a config expression,
            which the bundle config evaluates).
    """
    if not is_device_name(name):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return f"$torch.device('{name}')"


def bundle_dir(name: str) -> Path:
    """The folder of bundle ``name`` in this checkout (``bundles/<name>``)."""
    path = BUNDLES_DIR / name
    if not (path / "configs" / "metadata.json").is_file():
        known = sorted(p.name for p in BUNDLES_DIR.glob("*") if (p / "configs" / "metadata.json").is_file())
        raise FileNotFoundError(
            f"no bundle {name!r} under {BUNDLES_DIR}: choose one of {known} (install lmseg from a source checkout)."
        )
    return path


def copy_bundle(
    bundle: str | Path,
    target: str | Path,
    overrides: Mapping[str, Mapping] | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy a bundle's ``configs``, ``docs`` and ``LICENSE`` to ``target``, writing ``overrides`` (config file name
    -> top-level values, e.g. the values a model was trained with: ``{"inference.json": {"width": 8}}``) into the
    copied configs; return ``target``. Nested ids (``a#b``) are refused: a JSON file holds top-level keys.

    ``target`` must be new or empty unless ``overwrite`` is given (then the copied files replace those of the same
    names; nothing is deleted), and may not hold or lie inside ``bundle`` (see
    :func:`~lmseg_components.files.prepare_output_dir`).
    """
    bundle, target = Path(bundle), Path(target)
    overrides = {name: dict(values) for name, values in (overrides or {}).items()}
    nested = sorted(key for values in overrides.values() for key in values if "#" in key)
    if nested:
        raise ValueError(f"overrides must be top-level config ids, got {nested}")
    prepare_output_dir(target, overwrite, sources=[bundle])
    for part in ("configs", "docs"):
        shutil.copytree(bundle / part, target / part, dirs_exist_ok=True)
    shutil.copy2(bundle / "LICENSE", target / "LICENSE")
    for name, values in overrides.items():
        path = target / "configs" / name
        content = json.loads(path.read_text())
        content.update(values)
        path.write_text(json.dumps(content, indent=4) + "\n")
    return target


def run_monai_bundle(
    bundle: str | Path,
    args: Sequence[str],
    nproc: int = 1,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` run in the bundle folder, as a user types it, output captured as text;
    ``nproc > 1`` runs it under ``torchrun --standalone --nnodes=1 --nproc_per_node=<nproc>``. The one runner of
    bundle subprocesses (the Model-Zoo checks, the tests); the caller reads ``returncode``."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}"]
    command = [*launcher, "-m", "monai.bundle", *args]
    env = dict(env) if env is not None else None
    return subprocess.run(command, cwd=Path(bundle), capture_output=True, text=True, env=env, timeout=timeout)


def load_bundle(bundle: str | Path, configs: Sequence[str], overrides: dict | None = None) -> ConfigParser:
    """Parse ``configs`` (file names under ``<bundle>/configs``) with ``bundle_root`` set to the bundle folder
    unless overridden; ``overrides`` use the CLI's ids, e.g. ``{"epochs": 2, "validate#datalist": [...]}``."""
    bundle = Path(bundle)
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in configs])
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def run_workflow(
    bundle: str | Path,
    workflow: str,
    configs: Sequence[str],
    overrides: dict | None = None,
    logging_conf: bool = True,
    before_run: Callable[[ConfigParser], object] | None = None,
) -> ConfigParser:
    """Run the ``workflow`` (e.g. ``training``) of ``configs`` (file names under ``<bundle>/configs``) in this
    process with MONAI's :class:`~monai.bundle.ConfigWorkflow`, as ``python -m monai.bundle run`` does:
    ``initialize``, the workflow, ``finalize``; ``bundle_root`` is the bundle folder unless ``overrides`` (CLI
    ids) set it. ``before_run(parser)`` is called after ``initialize``, e.g. to attach handlers to the engines.
    Returns the parser, so that callers can read the engines' state
    (``parser.get_parsed_content("validate#evaluator").state.metrics``)."""
    bundle = Path(bundle)
    conf = bundle / "configs" / "logging.conf"
    runner = ConfigWorkflow(
        config_file=[str(bundle / "configs" / c) for c in configs],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(conf) if logging_conf and conf.is_file() else False,
        run_id=workflow,
        workflow_type=None,
        **{"bundle_root": str(bundle), **(overrides or {})},
    )
    runner.initialize()
    if before_run is not None:
        before_run(runner.parser)
    runner.run()
    runner.finalize()
    return runner.parser


def evaluate_metrics(
    bundle: str | Path, overrides: dict, datalist: list[dict] | None = None, overlays: Sequence[str] = ()
) -> dict[str, float]:
    """Evaluate the trained model of a bundle (``train.json`` + ``overlays`` + ``evaluate.json``) and return its
    metrics; ``datalist`` replaces the test records (e.g. with shuffled texts)."""
    extra = dict(overrides)
    if datalist is not None:
        extra["validate#datalist"] = datalist
    configs = ["train.json", *overlays, "evaluate.json"]
    parser = run_workflow(bundle, "evaluating", configs, extra, logging_conf=False)
    return dict(parser.get_parsed_content("validate#evaluator").state.metrics)
