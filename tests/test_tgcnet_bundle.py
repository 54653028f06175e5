"""The 2D TGC-Net bundle through ``python -m monai.bundle``: train, evaluate, infer (report + auxiliary prompt),
verify, export with ``torch.export`` and run the exported program through the inference config."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_cli import (
    BUNDLES,
    CPU,
    EXPORTED_INFERENCE,
    INFERENCE,
    MLFLOW,
    config_file,
    mlflow_runs,
    monai_bundle,
    run_bundle,
    tiny_network,
    with_small,
)
from PIL import Image

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_lvit
from lmseg_components.export import export_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

SMALL = tiny_network("tgcnet_lmis")
TINY = cli_overrides(SMALL) + ["--num_workers", "0", "--batch_size", "2", *CPU]


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str):
    return run_bundle("tgcnet_lmis", workflow, configs, root, *TINY, *extra)


@pytest.fixture(scope="module")
def trained(train_bundle):
    data = partial(make_synthetic_lvit, seed=0, size=64, n_train=6, n_val=2, n_test=3)
    return train_bundle("tgcnet_lmis", data, *TINY, *MLFLOW, "--epochs", "1")[0]


def test_training_checkpoint_holds_trainable_and_frozen_parts(trained):
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("sse.vit.visual.") for k in state) and any(k.startswith("sse.cnn.") for k in state)
    assert any(k.startswith("date.cross.") for k in state) and any(k.startswith("vlcm.context") for k in state)
    assert list((trained / "eval" / "tensorboard").glob("events.out.tfevents.*"))


def test_evaluate_and_infer(trained):
    run = _bundle("evaluating", ["configs/train.json", "configs/evaluate.json"], trained, *MLFLOW)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = mlflow_runs(trained)  # --tracking mlflow: MONAI's MLflow handlers on trainer, validator, evaluator
    assert {"train_loss", "val_mean_dice"} <= runs["training"] and "val_mean_dice" in runs["evaluating"]
    assert "val_mean_dice" in (trained / "eval" / "metrics.csv").read_text()
    run = _bundle("inference", ["configs/inference.json"], trained)
    assert run.returncode == 0, run.stderr[-3000:]
    out = trained / "eval" / "inference"
    assert len(list(out.glob("*_mask.png"))) == 3 and len(list(out.glob("*_overlay.png"))) == 3


@pytest.mark.slow  # CI's verify-bundles step runs net_in_out and the exports of every bundle on each submission
def test_verify_and_torch_export_program_runs_in_the_inference_config(trained, tmp_path):
    common = [
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        config_file(with_small(INFERENCE)),
    ]
    size = ["--_meta_#network_data_format#inputs#image#spatial_shape", "[64,64]"]  # the metadata's is the paper's 768
    verify = monai_bundle(
        "tgcnet_lmis", "verify_net_in_out", "network_def", *common, "--device", "cpu", *TINY[:8], *size
    )
    assert verify.returncode == 0 and "verified with no error" in verify.stdout + verify.stderr
    program = export_bundle(BUNDLES / "tgcnet_lmis", overrides={"bundle_root": str(trained), **SMALL})
    assert program == trained / "models" / "model.pt2"
    eager = sorted((trained / "eval" / "inference").glob("*_mask.png"))
    assert eager, "run test_evaluate_and_infer first (module order)"
    masks = {p.name: np.asarray(Image.open(p)) for p in eager}
    run = _bundle("inference", EXPORTED_INFERENCE, trained)
    assert run.returncode == 0, run.stderr[-3000:]
    for name, mask in masks.items():  # the exported program predicts what the eager network predicted
        assert np.array_equal(np.asarray(Image.open(trained / "eval" / "inference" / name)), mask)
