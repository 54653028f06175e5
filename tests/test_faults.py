"""Fault injection: a real ``python -m monai.bundle run training`` (TIRNet, tiny setting) is killed with SIGKILL
at several points and rerun with the same command. The rerun must end as the run that was never killed: the same
final weights, ``model.pt`` the best epoch's (its metric the one the log reports), no temporary file left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bundle_cli import BUNDLES, config_file, run_bundle, with_small

from lmseg_components.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_lvit, read_lvit_split
from lmseg_components.workflows import SMALL_CONFIG, evaluate_metrics

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

# 16 training images, batch 4: 4 iterations an epoch, 16 in all; a checkpoint after every iteration
TINY = {"image_size": 32, "width": 4, "num_workers": 0, "batch_size": 4}
ARGS = cli_overrides(TINY) + ["--epochs", "4", "--save_interval", "1", "--learning_rate", "0.003"]
TRAIN = ["configs/train.json"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread is faster and leaves a core to pytest
BEST = re.compile(r"Key metric: val_mean_dice best value: ([0-9.e-]+) at epoch: (\d+)")


def _train(root: Path) -> subprocess.CompletedProcess:
    run = run_bundle("tirnet_lmis", "training", TRAIN, root, *ARGS, env=ENV)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run


def _kill_after(root: Path, iteration: int) -> int:
    """Start the training, SIGKILL it as soon as its checkpoint has reached ``iteration``; return the
    checkpoint's iteration after the kill."""
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file", "configs/metadata.json"]
    command += ["--config_file", config_file(with_small(TRAIN)), "--bundle_root", str(root)]
    command += ["--dataset_dir", str(root / "data")]
    proc = subprocess.Popen(
        command + ARGS, cwd=BUNDLES / "tirnet_lmis", env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = root / "models" / "checkpoint.pt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if checkpoint.is_file() and _iteration(checkpoint) >= iteration:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before it could be killed"
    return _iteration(checkpoint)


def _iteration(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]["iteration"]


def _weights(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state[key] if key else state


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and its log's best value and epoch."""
    base = tmp_path_factory.mktemp("faults")
    make_synthetic_lvit(base / "data", seed=1, size=32, n_train=16, n_val=4, n_test=1)
    for run_root in ("reference", "killed"):  # each run's bundle_root, reading the one dataset
        (base / run_root).mkdir()
        (base / run_root / "data").symlink_to(base / "data")
    run = _train(base / "reference")
    return base / "reference", BEST.findall(run.stdout + run.stderr)[-1]


def test_killed_training_reruns_as_the_uninterrupted_run(reference):
    reference_root, (reference_best, reference_epoch) = reference
    root = reference_root.parent / "killed"
    # mid epoch 1, mid epoch 2 (after a validation), at the end of epoch 3 (its last batch, before validation)
    killed_at = [_kill_after(root, point) for point in (2, 6, 11)]
    assert killed_at == sorted(killed_at) and all(i % 4 for i in killed_at), killed_at
    run = _train(root)
    log = run.stdout + run.stderr
    assert f"Resumed from {root / 'models' / 'checkpoint.pt'} at epoch" in log

    assert _iteration(root / "models" / "checkpoint.pt") == 16
    for name, key in (("checkpoint.pt", "network"), ("model.pt", None)):
        rerun, uninterrupted = (_weights(r / "models" / name, key) for r in (root, reference_root))
        assert all(torch.equal(rerun[k], uninterrupted[k]) for k in uninterrupted), f"{name} differs"
    assert BEST.findall(log)[-1] == (reference_best, reference_epoch)

    # the saved model scores on the validation split what the log reported as best (evaluated in-process)
    overrides = {"bundle_root": str(root), "dataset_dir": str(root / "data"), **TINY}
    metrics = evaluate_metrics(
        BUNDLES / "tirnet_lmis", overrides, read_lvit_split(root / "data", "Val"), (SMALL_CONFIG,)
    )
    assert metrics["val_mean_dice"] == pytest.approx(float(reference_best), abs=1e-4)

    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith("tmp")]
    assert not leftovers, leftovers
