"""The TIRNet bundle through ``python -m monai.bundle``: train, evaluate, infer, resume, verify, export."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bundle_cli import run_bundle

from lmseg_components.data import make_synthetic_lvit

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "tirnet_lmis"
TINY = ["--image_size", "32", "--width", "4", "--num_workers", "0", "--batch_size", "2"]


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    return run_bundle("tirnet_lmis", workflow, configs, root, *TINY, *extra, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tirnet")
    make_synthetic_lvit(root / "data", seed=0, size=48, n_train=6, n_val=2, n_test=3)
    run = _bundle("training", ["configs/train.json"], root, "--epochs", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root


def test_training_writes_checkpoints_and_tensorboard(trained):
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert "head.weight" in state
    resume = torch.load(trained / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert set(resume) == {"trainer", "network", "optimizer", "lr_scheduler", "best_model", "rng", "run_record"}
    assert resume["trainer"]["iteration"] == 3 and resume["trainer"]["epoch_length"] == 3
    assert list((trained / "eval" / "tensorboard").glob("events.out.tfevents.*"))


def test_evaluating_writes_metrics_and_per_image_csv(trained):
    run = _bundle("evaluating", ["configs/train.json", "configs/evaluate.json"], trained)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = (trained / "eval" / "metrics.csv").read_text()
    for name in ("val_mean_dice", "val_mean_iou", "val_global_dice", "val_global_iou"):
        assert name in metrics
    with open(trained / "eval" / "val_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert len(rows) == 1 + 3 and any("syn_test_0002.png" in cell for cell in rows[-1])


def test_inference_writes_masks_and_overlays(trained):
    run = _bundle("inference", ["configs/inference.json"], trained)
    assert run.returncode == 0, run.stderr[-3000:]
    out = trained / "eval" / "inference"
    from PIL import Image

    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == 3 and len(list(out.glob("*_overlay.png"))) == 3
    assert Image.open(masks[0]).size == (48, 48)  # inverted back to the input image size


def test_verify_net_in_out_and_torchscript_export(trained):
    common = ["--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"]
    verify = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", *common, "--device", "cpu"],
        cwd=BUNDLE,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and "data shape of network is verified with no error" in verify.stdout + verify.stderr
    ts = trained / "models" / "model.ts"
    export = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts)]
        + ["--ckpt_file", str(trained / "models" / "model.pt"), *common, "--width", "4"],
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


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    make_synthetic_lvit(tmp_path / "data", seed=1, size=32, n_train=16, n_val=2, n_test=1)
    args = ["--epochs", "3", "--save_interval", "1", "--val_interval", "3"]
    config = ["configs/train.json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config[0]]
        + [
            "--meta_file",
            "configs/metadata.json",
            "--bundle_root",
            str(tmp_path),
            "--dataset_dir",
            str(tmp_path / "data"),
        ]
        + TINY
        + args,
        cwd=BUNDLE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "models" / "checkpoint.pt"
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.is_file():
            iteration = torch.load(checkpoint, weights_only=True)["trainer"]["iteration"]
            if iteration >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_at = torch.load(checkpoint, weights_only=True)["trainer"]["iteration"]
                break
        time.sleep(0.02)
    assert killed_at is not None and killed_at < 24, "the run finished before it could be killed"
    resumed = _bundle("training", config, tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"iteration {killed_at}" in log and "Resumed from" in log
    final = torch.load(checkpoint, weights_only=True)
    assert final["trainer"]["iteration"] == 24 and final["trainer"]["max_epochs"] == 3
