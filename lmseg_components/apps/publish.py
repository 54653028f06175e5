"""``lmseg publish``: a trained run as a bundle folder others can download and run as it is: the configs with the
values the model was trained with, the checkpoint and its run record, a ``large_files.yml`` entry with the
checkpoint's SHA-256 at the address where the user hosts it, and a model card."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import urllib.parse
from pathlib import Path

from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.files import prepare_output_dir
from lmseg_components.runs import RUN_RECORD_FILE, check_trained_with, trained_overrides, trained_values
from lmseg_components.workflows import copy_bundle

__all__ = ["MODEL_CARD", "inference_command", "publish", "sha256_of"]

MODEL_CARD = "docs/MODEL_CARD.md"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _metrics(run: Path) -> dict[str, str]:
    """``<run>/eval/metrics.csv`` (``metric,value`` rows, as MONAI's MetricsSaver writes it); empty when absent."""
    path = run / "eval" / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}


def _check_url(url: str) -> None:
    parsed = urllib.parse.urlparse(str(url).strip())
    if not str(url).strip():
        raise ValueError("give --url: where you host models/model.pt (large_files.yml points there)")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"--url {url!r} is not an http(s) address: give where you host models/model.pt "
            "(e.g. https://your.host/models/model.pt; large_files.yml points there)"
        )


def inference_command(meta: dict) -> str:
    """The command that runs a published bundle on a user's own data: images and a prompts file for the text
    bundles, a dataset folder for the others."""
    command = (
        "python -m monai.bundle run inference --meta_file configs/metadata.json --config_file configs/inference.json"
    )
    if "text" in meta["network_data_format"]["inputs"]:
        return command + " --images /path/to/images --prompts /path/to/prompts.csv"
    return command + " --dataset_dir /path/to/dataset"


def _model_card(
    name: str, version: str, url: str, digest: str, size: int, record: dict, metrics: dict, command: str
) -> str:
    values = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in sorted(record.items()) if k != "dataset")
    scores = (
        "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
        if metrics
        else "| — | not evaluated: run `evaluating` on the run before publishing |"
    )
    return f"""# Model card: {name} {version}

Published with `lmseg publish` from a trained run. The configs in `configs/` hold the values this model was trained
with (`models/run_record.json` is the full record). From this folder, on your own data:
```bash
{command}
```

## Checkpoint
| file | size | SHA-256 | hosted at |
|---|---|---|---|
| `models/model.pt` | {size / 2**20:.1f} MiB | `{digest}` | {url} |

Fetch it with `python -m monai.bundle download` or by hand to `models/model.pt`; the hash is in `large_files.yml`.

## Training data
Dataset fingerprint (names, sizes and texts of the training and validation items, not their folder):
`{record.get("dataset", "not recorded")}`.

## Trained with
| config id | value |
|---|---|
{values}

## Metrics (the run's `eval/metrics.csv`)
| metric | value |
|---|---|
{scores}
"""


def publish(bundle: str | Path, run: str | Path, out: str | Path, url: str, overwrite: bool = False) -> Path:
    """Write the bundle folder ``out`` for the model trained in ``run``.

    Args:
        bundle: the bundle folder the run was trained from (``bundles/tirnet_lmis``).
        run: the run's ``bundle_root`` (``models/model.pt``, ``models/run_record.json``, ``eval/metrics.csv``).
        out: the folder to write: new or empty unless ``overwrite``; never one that holds the bundle or the run.
        url: the http(s) address where you host ``model.pt`` (``large_files.yml``); lmseg never makes one up.
        overwrite: write into a non-empty ``out`` (files of the same names are replaced).

    Returns:
        ``out``.

    Raises:
        ValueError: no ``url``, or one that is not http(s); ``out`` overlaps the bundle or the run; the run has no
            run record.
        FileNotFoundError: the run has no ``models/model.pt`` (or it is truncated: ``check_checkpoint_file``).
    """
    _check_url(url)
    bundle, run = Path(bundle), Path(run)
    model = check_checkpoint_file(run / "models" / "model.pt")
    record = trained_values(model.parent)
    check_trained_with(bundle, model.parent)
    if not record:
        raise ValueError(f"{model.parent} has no {RUN_RECORD_FILE} (nor a run record in checkpoint.pt) to publish")
    out = prepare_output_dir(out, overwrite, sources=[bundle, run])
    # train.json with the trained values (evaluation, further training); inference.json reads the run record
    copy_bundle(bundle, out, {"train.json": trained_overrides(bundle, ["train.json"], model.parent)}, overwrite=True)
    (out / "models").mkdir(exist_ok=True)
    shutil.copy2(model, out / "models" / "model.pt")
    (out / "models" / RUN_RECORD_FILE).write_text(json.dumps(record, indent=1))
    digest = sha256_of(model)
    (out / "large_files.yml").write_text(
        f'large_files:\n  - path: "models/model.pt"\n    url: "{url}"\n    hash_val: "{digest}"\n'
        '    hash_type: "sha256"\n'
    )
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    size, command = model.stat().st_size, inference_command(meta)
    card = _model_card(bundle.name, meta["version"], url, digest, size, record, _metrics(run), command)
    (out / MODEL_CARD).write_text(card)
    return out
