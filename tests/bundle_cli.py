"""Run a bundle's workflows through ``python -m monai.bundle`` as a user would (helper for the bundle tests)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def run_bundle(
    bundle: str, workflow: str, configs: Sequence[str], root: Path, *extra: str, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run <workflow>`` in ``bundles/<bundle>`` with ``bundle_root=root`` and
    ``dataset_dir=root/data``; ``extra`` are CLI overrides."""
    config = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", workflow, "--meta_file", "configs/metadata.json"]
    command += ["--config_file", config, "--logging_file", "configs/logging.conf"]
    command += ["--bundle_root", str(root), "--dataset_dir", str(root / "data"), *extra]
    return subprocess.run(command, cwd=BUNDLES / bundle, capture_output=True, text=True, **kwargs)


def monai_bundle(bundle: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in ``bundles/<bundle>`` (verify_net_in_out, ckpt_export, ...)."""
    command = [sys.executable, "-m", "monai.bundle", *args]
    return subprocess.run(command, cwd=BUNDLES / bundle, capture_output=True, text=True)
