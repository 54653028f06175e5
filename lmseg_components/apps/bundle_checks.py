"""The checks the MONAI Model Zoo CI runs on a bundle, for every bundle under ``bundles/``.

Per bundle: required files, metadata against the packaged schema (the Model Zoo's required fields), version
present in the changelog, 4-space JSON formatting, the same values in ``train.json`` and ``inference.json`` (and in
an overlay ``X.json`` and its ``X_inference.json``), ``large_files.yml`` format, ``ConfigWorkflow`` properties,
a 1-epoch train -> evaluate -> inference through ``python -m monai.bundle`` on a tiny synthetic dataset,
``verify_net_in_out`` and a TorchScript ``ckpt_export`` whose output loads with ``torch.jit.load``. The runs load
the bundle's CPU setting (``configs/small.json``, no model hub needed) over its paper defaults; per-bundle dataset
kind and tiny overrides come from ``lmseg_components/resources/bundle_checks.json`` (:data:`CHECK_SETTINGS`).

    lmseg verify-bundles
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lmseg_components.errors import UserInputError
from lmseg_components.locations import BUNDLES_DIR, PACKAGE_DIR

__all__ = ["CHECKS", "CHECK_SETTINGS", "check_bundle", "cli_overrides", "verify_bundles"]

REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/small.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
    "large_files.yml",
)
SCHEMA = PACKAGE_DIR / "resources" / "bundle_metadata_schema.json"
# per bundle: its synthetic data and the tiny overrides the checks (and the tests) run it with
CHECK_SETTINGS = PACKAGE_DIR / "resources" / "bundle_checks.json"


FAILED_LOG_LINES = 8  # of a failed check's own console output, shown under its reason


class CheckFailed(Exception):
    """A check's failure, with the reason shown in the report."""


def _bundle_cli(bundle: Path, args: list[str], timeout: int = 900) -> str:
    from lmseg_components.workflows import run_monai_bundle

    run = run_monai_bundle(bundle, args, timeout=timeout)
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise CheckFailed(f"monai.bundle {args[0]} {args[1] if len(args) > 1 else ''} failed: {' | '.join(tail)}")
    return run.stdout + run.stderr


def cli_overrides(values: dict) -> list[str]:
    """``{"epochs": 1, "image_size": 32}`` -> ``["--epochs", "1", "--image_size", "32"]`` for ``monai.bundle``."""
    return [item for key, value in values.items() for item in (f"--{key}", json.dumps(value))]


def check_files(bundle: Path, ctx: dict) -> str:
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    if missing:
        raise CheckFailed(f"missing {missing}")
    return f"{len(REQUIRED_FILES)} files"


def check_metadata(bundle: Path, ctx: dict) -> str:
    import jsonschema

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    try:
        jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "metadata"
        raise CheckFailed(f"configs/metadata.json: {where}: {e.message}") from e
    if meta["version"] not in meta["changelog"]:
        raise CheckFailed(f"version {meta['version']} is not a key of changelog")
    drift = _required_packages(meta["required_packages_version"])
    return f"version {meta['version']}" + (f"; installed here: {', '.join(drift)}" if drift else "")


def _required_packages(required: dict[str, str]) -> list[str]:
    """Check that every ``required_packages_version`` entry names an installed distribution (so ``pip install
    <name>==<version>`` is the command it stands for) and that the ``lmseg`` entry is this package's version (a
    bundle downloaded alone gets its Python from it, see the README); returns ``name version`` for the others
    whose installed version differs (information: the metadata records the versions the bundle was checked
    with)."""
    from importlib.metadata import PackageNotFoundError, version

    drift, missing = [], []
    for name, pinned in required.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
        if name == "lmseg" and installed != pinned:
            raise CheckFailed(f"required_packages_version lmseg {pinned}, but this lmseg is {installed}")
        if installed != pinned:
            drift.append(f"{name} {installed}")
    if missing:
        raise CheckFailed(f"required_packages_version names no installed distribution: {missing}")
    return drift


def check_json_style(bundle: Path, ctx: dict) -> str:
    bad = []
    for path in sorted((bundle / "configs").glob("*.json")):
        text = path.read_text()
        if json.dumps(json.loads(text), indent=4) + "\n" != text:
            bad.append(path.name)
    if bad:
        raise CheckFailed(f"not 4-space indented JSON with unsorted keys: {bad}")
    return "4-space JSON"


TRAINED = "$@trained['{key}']"  # how inference.json reads a trained value (lmseg_components.runs.TrainedValues)
WORKFLOW_IDS = ("imports", "output_dir", "num_workers", "initialize", "run", "finalize")  # may differ per workflow


def _config_drift(train: dict, infer: dict) -> list[str]:
    """Ids that ``train`` and ``infer`` share but set differently, as messages. A component definition (a dict
    with ``_target_``) must keep its target and the value of every argument both give; training-only arguments
    (e.g. ``retriever_seg_grad``) may be absent from inference. A value ``train``'s run record holds is read from
    the trained run (``"$@trained['key']"``), never written again; only a recorded value may be read so."""
    from lmseg_components.runs import recorded_ids

    recorded = recorded_ids(train)
    drift = []
    for key, b in infer.items():
        if isinstance(b, str) and b.startswith("$@trained["):
            if b != TRAINED.format(key=key) or key not in recorded:
                drift.append(f"{key}: {b} in inference reads a value train.json's run_record does not hold as {key}")
            continue
        if key not in train or key in WORKFLOW_IDS:
            continue
        a = train[key]
        if isinstance(a, dict) and isinstance(b, dict) and "_target_" in a:
            drift += [
                f"{key}#{arg}: {b.get(arg)!r} in inference, {a.get(arg)!r} in training"
                for arg in sorted(set(a) & set(b))
                if a[arg] != b[arg]
            ]
        elif a != b:
            drift.append(f"{key}: {json.dumps(b)} in inference, {json.dumps(a)} in training")
        elif key in recorded and not isinstance(b, dict):
            drift.append(f'{key}: written again in inference; read it from the run record: "{TRAINED.format(key=key)}"')
    return drift


def check_config_consistency(bundle: Path, ctx: dict) -> str:
    """Every value that ``train.json`` and ``inference.json`` both set (and ``X.json`` and ``X_inference.json``,
    an overlay and its inference counterpart) is the same, and what the run record holds ``inference.json`` reads
    from it: a model is never served with other sizes, classes or preprocessing than it was trained with."""
    configs = bundle / "configs"
    pairs = [("train.json", "inference.json")]
    pairs += [
        (p.name.replace("_inference.json", ".json"), p.name)
        for p in sorted(configs.glob("*_inference.json"))
        if (configs / p.name.replace("_inference.json", ".json")).is_file()
    ]
    drift = []
    for train, infer in pairs:
        values = [json.loads((configs / name).read_text()) for name in (train, infer)]
        drift += [f"{infer} vs {train}: {d}" for d in _config_drift(*values)]
    if drift:
        raise CheckFailed("; ".join(drift))
    return f"{len(pairs)} pair(s)"


def check_large_files(bundle: Path, ctx: dict) -> str:
    import yaml

    content = yaml.safe_load((bundle / "large_files.yml").read_text()) or {}
    entries = content.get("large_files")
    if not isinstance(entries, list) or not entries:
        raise CheckFailed("large_files.yml needs a non-empty 'large_files' list")
    for entry in entries:
        missing = {"path", "url", "hash_val", "hash_type"} - set(entry)
        if missing:
            raise CheckFailed(f"large_files entry {entry} lacks {sorted(missing)}")
    return f"{len(entries)} entries"


def check_properties(bundle: Path, ctx: dict) -> str:
    from monai.bundle import ConfigWorkflow

    configs = bundle / "configs"
    common = {"bundle_root": str(ctx["root"]), "dataset_dir": str(ctx["data"]), **ctx["overrides"]}
    for kind, files in (("train", ["train.json", "small.json"]), ("infer", ["inference.json", "small.json"])):
        workflow = ConfigWorkflow(
            workflow_type=kind,
            config_file=[str(configs / f) for f in files],
            meta_file=str(configs / "metadata.json"),
            logging_file=str(configs / "logging.conf"),
            **{k: v for k, v in common.items() if kind == "train" or k in ("bundle_root", "dataset_dir")},
        )
        workflow.initialize()
        missing = workflow.check_properties()
        if missing:
            raise CheckFailed(f"{kind} workflow lacks required properties {missing}")
    return "train + infer"


def check_train_evaluate_infer(bundle: Path, ctx: dict) -> str:
    root, data = ctx["root"], ctx["data"]
    common = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    common += ["--bundle_root", str(root), "--dataset_dir", str(data), *cli_overrides(ctx["overrides"])]
    _bundle_cli(bundle, ["run", "training", "--config_file", "['configs/train.json','configs/small.json']", *common])
    if not (root / "models" / "model.pt").is_file():
        raise CheckFailed("training wrote no models/model.pt")
    _bundle_cli(
        bundle,
        [
            "run",
            "evaluating",
            "--config_file",
            "['configs/train.json','configs/small.json','configs/evaluate.json']",
            *common,
        ],
    )
    if not (root / "eval" / "metrics.csv").is_file():
        raise CheckFailed("evaluating wrote no eval/metrics.csv")
    infer = ["--meta_file", "configs/metadata.json", "--bundle_root", str(root), "--dataset_dir", str(data)]
    infer += cli_overrides({k: v for k, v in ctx["overrides"].items() if k in ctx["infer_keys"]})
    _bundle_cli(
        bundle, ["run", "inference", "--config_file", "['configs/inference.json','configs/small.json']", *infer]
    )
    outputs = [p for p in (root / "eval").rglob("*") if p.is_file() and "inference" in p.parts]
    if not outputs:
        raise CheckFailed("inference wrote nothing under eval/inference")
    return f"{len(outputs)} inference files"


def check_net_in_out(bundle: Path, ctx: dict) -> str:
    """MONAI's ``verify_net_in_out`` with the text inputs of ``network_data_format`` passed as extra forward
    arguments (random token features of the metadata's shape)."""
    from monai.bundle import verify_net_in_out

    from lmseg_components.export import example_inputs, network_inputs
    from lmseg_components.workflows import load_bundle

    overrides = {"bundle_root": str(ctx["root"]), **ctx["export_overrides"]}
    parser = load_bundle(bundle, ["inference.json", "small.json"], overrides)
    inputs = network_inputs(parser)  # the metadata's shapes at the small setting's sizes and widths
    _, named = example_inputs(inputs)  # verify_net_in_out makes the image; the token features are extra args
    image = {
        f"_meta_#network_data_format#inputs#image#{k}": inputs["image"][k] for k in ("num_channels", "spatial_shape")
    }
    configs = bundle / "configs"
    verify_net_in_out(
        net_id=ctx["net_id"],
        meta_file=str(configs / "metadata.json"),
        config_file=[str(configs / c) for c in ("inference.json", "small.json")],
        device="cpu",
        extra_forward_args=named,
        **overrides,
        **image,
    )
    return f"{ctx['net_id']} verified" + (f" with {', '.join(named)}" if named else "")


def check_export(bundle: Path, ctx: dict) -> str:
    """Export each network of ``ctx["exports"]`` (default: ``network_def`` -> ``models/model.ts``) with
    ``ckpt_export`` from ``models/model.pt`` (``key_in_ckpt`` for multi-network checkpoints) and load it back."""
    import torch

    checkpoint = ctx["root"] / "models" / "model.pt"
    if not checkpoint.is_file():
        raise CheckFailed("no models/model.pt to export (training check failed)")
    written = []
    for export in ctx["exports"]:
        if export.get("kind") == "torch.export":
            written.append(_check_program_export(bundle, ctx, export))
            continue
        target = ctx["root"] / export.get("filepath", "models/model.ts")
        args = ["ckpt_export", export.get("net_id", "network_def"), "--filepath", str(target)]
        args += ["--ckpt_file", str(checkpoint), "--meta_file", "configs/metadata.json"]
        args += ["--config_file", "['configs/inference.json','configs/small.json']"]
        if export.get("key_in_ckpt"):
            args += ["--key_in_ckpt", export["key_in_ckpt"]]
        _bundle_cli(bundle, args + cli_overrides(ctx["export_overrides"]))
        torch.jit.load(str(target))
        written.append(target.name)
    return f"exports load: {', '.join(written)}"


def _check_program_export(bundle: Path, ctx: dict, export: dict) -> str:
    """The ``lmseg export`` path (``torch.export``) and a run of the saved program against the eager network."""
    import torch

    from lmseg_components.export import ExportedNetwork, export_program, prepare_bundle_export

    overrides = {"bundle_root": str(ctx["root"]), **ctx["export_overrides"]}
    network, inputs, named, root = prepare_bundle_export(bundle, overrides=overrides)
    path = export_program(network, inputs, root / export.get("filepath", "models/model.pt2"), named)
    program = ExportedNetwork(path)
    with torch.no_grad():
        if not torch.allclose(program(*inputs, **named), network(*inputs, **named), atol=1e-4):
            raise CheckFailed(f"{path.name} differs from the eager network")
    return path.name


CHECKS: dict[str, Callable[[Path, dict], str]] = {
    "files": check_files,
    "metadata": check_metadata,
    "json_style": check_json_style,
    "config_consistency": check_config_consistency,
    "large_files": check_large_files,
    "properties": check_properties,
    "train/eval/infer": check_train_evaluate_infer,
    "net_in_out": check_net_in_out,
    "ts_export": check_export,
}


def _make_data(spec: dict, out: Path) -> None:
    from lmseg_components.data import SYNTHETIC_MAKERS

    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in SYNTHETIC_MAKERS:
        raise ValueError(
            f"{CHECK_SETTINGS.name}: unknown synthetic kind {kind!r}; choose from {sorted(SYNTHETIC_MAKERS)}"
        )
    SYNTHETIC_MAKERS[kind](out, **spec)


def check_bundle(
    bundle: Path, settings: dict, workdir: Path, checks: Sequence[str] | None = None
) -> dict[str, tuple[bool, str]]:
    """Run the ``checks`` (default: all of :data:`CHECKS`) on one bundle; returns ``{check: (passed, detail)}``."""
    root = workdir / bundle.name
    data = root / "data"
    _make_data(settings["synthetic"], data)
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    ctx = {
        "root": root,
        "data": data,
        "overrides": settings.get("overrides", {}),
        "export_overrides": settings.get("export_overrides", {}),
        "net_id": settings.get("net_id", "network_def"),
        "exports": settings.get("exports", [{"net_id": "network_def"}]),
        "infer_keys": set(inference),
    }
    results = {}
    log = root / "checks.log"
    for name in checks or CHECKS:
        check = CHECKS[name]
        start = log.stat().st_size if log.is_file() else 0
        try:
            with _console_to(log):
                results[name] = (True, check(bundle, ctx))
        except CheckFailed as e:
            results[name] = (False, str(e))
        except Exception as e:  # a crashing check is a failed check, reported in the table
            results[name] = (False, f"{type(e).__name__}: {e}")
        if not results[name][0]:
            printed = log.read_bytes()[start:].decode(errors="replace").strip().splitlines()[-FAILED_LOG_LINES:]
            results[name] = (False, "\n".join([results[name][1], *(f"    | {line}" for line in printed)]))
    return results


@contextlib.contextmanager
def _console_to(path: Path) -> Iterator[None]:
    """Send what a check prints to ``path``, at the file descriptors: MONAI's input summaries (whole example
    tensors), the bundles' logging configs, open_clip's model notices and library warnings would bury the table; a
    failed check shows the last lines of its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def verify_bundles(
    bundles_dir: str | Path | None = None,
    settings_file: str | Path | None = None,
    checks: Sequence[str] | None = None,
) -> int:
    """Check every bundle, print a bundle x check table and return the process exit status (0: all pass).

    Args:
        bundles_dir: folder of bundles (default: this checkout's ``bundles/``).
        settings_file: per-bundle synthetic data and tiny overrides (default: :data:`CHECK_SETTINGS`).
        checks: names of the checks to run (default: all of :data:`CHECKS`).
    """
    unknown = sorted(set(checks or ()) - set(CHECKS))
    if unknown:
        raise UserInputError(f"--checks: unknown {unknown}; choose from {','.join(CHECKS)}")
    bundles_dir = Path(bundles_dir) if bundles_dir else BUNDLES_DIR
    settings_file = Path(settings_file) if settings_file else CHECK_SETTINGS
    for option, path, is_there, kind in (
        ("--bundles_dir", bundles_dir, Path.is_dir, "folder"),
        ("--settings_file", settings_file, Path.is_file, "file"),
    ):
        if not is_there(path):
            raise UserInputError(f"{option} {path}: no such {kind}")
    settings = json.loads(settings_file.read_text())
    bundles = sorted(p for p in bundles_dir.iterdir() if (p / "configs").is_dir())
    if not bundles:
        print(f"no bundle found under {bundles_dir}")
        return 1
    report = {}
    with tempfile.TemporaryDirectory(prefix="lmseg-verify-") as tmp:
        for bundle in bundles:
            if bundle.name not in settings:
                report[bundle.name] = {"settings": (False, f"no entry in {settings_file.name}")}
                continue
            print(f"checking {bundle.name} ...", flush=True)
            report[bundle.name] = check_bundle(bundle, settings[bundle.name], Path(tmp), checks)
    names = list(checks or CHECKS)
    width = max(len(n) for n in report) + 2
    print("\n" + "bundle".ljust(width) + " ".join(n.ljust(len(n) + 1) for n in names))
    for bundle, results in report.items():
        cells = [("PASS" if results[n][0] else "FAIL") if n in results else "FAIL" for n in names]
        print(bundle.ljust(width) + " ".join(c.ljust(len(n) + 1) for c, n in zip(cells, names, strict=True)))
    failures = [(b, n, d) for b, r in report.items() for n, (ok, d) in r.items() if not ok]
    for bundle, name, detail in failures:
        print(f"FAIL {bundle} / {name}: {detail}")
    print(f"{len(report)} bundle(s), {len(failures)} failed check(s)")
    return 1 if failures else 0
