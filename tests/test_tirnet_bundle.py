"""The TIRNet bundle through ``python -m monai.bundle``: train, evaluate, infer, resume, verify, export."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_cli import (
    BUNDLES,
    CPU,
    INFERENCE,
    MLFLOW,
    TIRNET_TINY,
    config_file,
    mlflow_runs,
    run_bundle,
    tiny_args,
    with_small,
)

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_lvit

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

BUNDLE = BUNDLES / "tirnet_lmis"
TINY = [*tiny_args("tirnet_lmis"), "--num_workers", "0", "--batch_size", "2", *CPU]


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    return run_bundle("tirnet_lmis", workflow, configs, root, *TINY, *extra, **kwargs)


@pytest.fixture(scope="module")
def trained(train_bundle):
    data = partial(make_synthetic_lvit, seed=0, size=48, n_train=6, n_val=2, n_test=3)
    return train_bundle("tirnet_lmis", data, *TINY, *MLFLOW, "--epochs", "1")[0]


def test_training_writes_checkpoints_and_tensorboard(trained):
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert "head.weight" in state
    resume = torch.load(trained / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert set(resume) == {"trainer", "network", "optimizer", "lr_scheduler", "best_model", "rng", "run_record"}
    assert resume["trainer"]["iteration"] == 3 and resume["trainer"]["epoch_length"] == 3
    assert list((trained / "eval" / "tensorboard").glob("events.out.tfevents.*"))
    record = json.loads((trained / "models" / "run_record.json").read_text())
    assert 0.0 < record["presence_threshold"] < 1.0  # chosen on the validation prompts when training ended


def test_evaluating_writes_metrics_and_per_image_csv(trained):
    run = _bundle("evaluating", ["configs/train.json", "configs/evaluate.json"], trained, *MLFLOW)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = mlflow_runs(trained)  # --tracking mlflow: MONAI's MLflow handlers on trainer, validator, evaluator
    assert {"train_loss", "val_mean_dice"} <= runs["training"] and "val_mean_dice" in runs["evaluating"]
    metrics = (trained / "eval" / "metrics.csv").read_text()
    for name in ("val_mean_dice", "val_mean_iou", "val_global_dice", "val_global_iou"):
        assert name in metrics
    with open(trained / "eval" / "val_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert len(rows) == 1 + 3 and any("syn_test_0002.png" in cell for cell in rows[-1])


def test_inference_writes_masks_and_overlays(trained):
    """``inference.json`` alone, without small.json or the tiny overrides the run was trained with: it reads the
    image size, widths and text encoder from the run record (the paper defaults would need hub weights)."""
    run = run_bundle("tirnet_lmis", "inference", ["configs/inference.json"], trained, *CPU, small=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = trained / "eval" / "inference"
    from PIL import Image

    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == 3 and len(list(out.glob("*_overlay.png"))) == 3
    assert Image.open(masks[0]).size == (48, 48)  # inverted back to the input image size
    # the presence decision with the threshold of the run record: a prompt not found has an empty mask
    threshold = json.loads((trained / "models" / "run_record.json").read_text())["presence_threshold"]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(line["image"]).stem + "_mask.png" for line in lines) == [m.name for m in masks]
    for line in lines:
        assert line["found"] == (line["score"] >= threshold) and line["text"]
        assert line["found"] or not np.asarray(Image.open(out / f"{Path(line['image']).stem}_mask.png")).any()


@pytest.mark.slow  # CI's verify-bundles step runs net_in_out and the exports of every bundle on each submission
def test_verify_net_in_out_and_torchscript_export(trained):
    common = [
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        config_file(with_small(INFERENCE)),
    ]
    # the metadata describes the paper network (3 channels); small.json's takes the grey channel alone
    one_channel = ["--_meta_#network_data_format#inputs#image#num_channels", "1"]
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_net_in_out",
            "network_def",
            *common,
            *one_channel,
            "--device",
            "cpu",
        ],
        cwd=BUNDLE,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and "data shape of network is verified with no error" in verify.stdout + verify.stderr
    ts = trained / "models" / "model.ts"
    export = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts)]
        + [
            "--ckpt_file",
            str(trained / "models" / "model.pt"),
            *common,
            *cli_overrides({"width": TIRNET_TINY["width"]}),
        ],
        cwd=BUNDLE,
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    scripted = torch.jit.load(str(ts))
    from lmseg_components.networks import TIRNet

    net = TIRNet(in_channels=1, width=4, text_dim=384).eval()
    net.load_state_dict(torch.load(trained / "models" / "model.pt", weights_only=True))
    image, text = torch.rand(1, 1, 32, 32), torch.randn(1, 32, 384)
    assert torch.allclose(scripted(image, text), net(image, text), atol=1e-5)
