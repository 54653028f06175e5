"""Fault injection: a real ``python -m monai.bundle run training`` (TIRNet, tiny setting) is killed with SIGKILL
at several points and rerun with the same command. The rerun must end as the run that was never killed: the same
final weights, ``model.pt`` the best epoch's (its metric the one the log reports), no temporary file left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_cli import BUNDLES, CPU, config_file, run_bundle, tiny_args, with_small

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_acdc, make_synthetic_lvit, read_lvit_split
from lmseg_components.workflows import SMALL_CONFIG, evaluate_metrics

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

# 16 training images, batch 4: 4 iterations an epoch, 16 in all; a checkpoint after every iteration
# (the validation Dice of this seed peaks at epoch 3: model.pt must not be the last epoch's)
TINY = {"image_size": 64, "width": 8, "num_workers": 0, "batch_size": 4}
ARGS = cli_overrides(TINY) + ["--epochs", "4", "--save_interval", "1", "--learning_rate", "0.003"]
TRAIN = ["configs/train.json"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread is faster and leaves a core to pytest
BEST = re.compile(r"Key metric: val_mean_dice best value: ([0-9.e-]+) at epoch: (\d+)")


def _train(root: Path) -> subprocess.CompletedProcess:
    run = run_bundle("tirnet_lmis", "training", TRAIN, root, *ARGS, env=ENV)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run


# Runs ``python -m monai.bundle`` with ``ResumableCheckpoint``'s save wrapped: the process SIGKILLs itself as
# soon as the checkpoint of iteration ``argv[1]`` is on disk. (Polling the file from outside raced: two tiny
# iterations and a validation can land between two polls.)
KILL_AFTER_SAVE = """
import os, runpy, signal, sys
from lmseg_components.engines import checkpoint
iteration, sys.argv = int(sys.argv[1]), sys.argv[:1] + sys.argv[2:]
save = checkpoint.atomic_save
def save_then_die(state, path):
    save(state, path)
    if "trainer" in state and state["trainer"]["iteration"] >= iteration:  # not model.pt
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.atomic_save = save_then_die
runpy.run_module("monai.bundle", run_name="__main__")
"""


def _kill_after(root: Path, iteration: int, bundle: str = "tirnet_lmis", args: list[str] = ARGS) -> None:
    """Run the training until its checkpoint of ``iteration`` is saved, SIGKILLed right there."""
    command = [sys.executable, "-c", KILL_AFTER_SAVE, str(iteration), "run", "training"]
    command += ["--meta_file", "configs/metadata.json", "--config_file", config_file(with_small(TRAIN))]
    command += ["--bundle_root", str(root), "--dataset_dir", str(root / "data")]
    proc = subprocess.run(command + args, cwd=BUNDLES / bundle, env=ENV, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) unkilled: {proc.stderr[-2000:]}"
    assert _iteration(root / "models" / "checkpoint.pt") == iteration


def _iteration(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]["iteration"]


def _weights(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state[key] if key else state


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and its log's best value and epoch."""
    base = tmp_path_factory.mktemp("faults")
    make_synthetic_lvit(base / "data", seed=1, size=64, n_train=16, n_val=4, n_test=1)
    for run_root in ("reference", "killed"):  # each run's bundle_root, reading the one dataset
        (base / run_root).mkdir()
        (base / run_root / "data").symlink_to(base / "data")
    run = _train(base / "reference")
    best, epoch = BEST.findall(run.stdout + run.stderr)[-1]
    assert float(best) > 0 and int(epoch) < 4, "the premise: model.pt is an earlier epoch's than the last"
    return base / "reference", (best, epoch)


def test_killed_training_reruns_as_the_uninterrupted_run(reference):
    reference_root, (reference_best, reference_epoch) = reference
    root = reference_root.parent / "killed"
    # mid epoch 1; mid epoch 2 (after a validation); one batch before the end of epoch 3; at the end of epoch 3,
    # after its validation (a checkpoint saved before that validation would resume past it: epoch 3 never scored)
    for point in (2, 6, 11, 12):
        _kill_after(root, point)
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


# J-RAS: 4 training patients (32 slices), batch 8: 4 iterations an epoch, 8 in all
JRAS_ARGS = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "8"]
JRAS_ARGS += ["--epochs", "2", "--save_interval", "1", *CPU]


def test_killed_jras_training_reruns_as_the_uninterrupted_run(tmp_path):
    """The joint iteration (segmenter and retriever, contrastive views drawn from the random state) resumes as the
    run that was never killed: the same network, best model and persisted retrieval index."""
    make_synthetic_acdc(tmp_path / "data", seed=0, n_patients=6, shape=(32, 32, 4))
    for run_root in ("reference", "killed"):
        (tmp_path / run_root).mkdir()
        (tmp_path / run_root / "data").symlink_to(tmp_path / "data")
    reference = run_bundle("jras_segmentation", "training", TRAIN, tmp_path / "reference", *JRAS_ARGS, env=ENV)
    assert reference.returncode == 0, reference.stderr[-3000:]
    root = tmp_path / "killed"
    _kill_after(root, 5, "jras_segmentation", JRAS_ARGS)  # mid epoch 2, after a validation and an index rebuild
    rerun = run_bundle("jras_segmentation", "training", TRAIN, root, *JRAS_ARGS, env=ENV)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _iteration(root / "models" / "checkpoint.pt") == 8
    for name, key in (("checkpoint.pt", "network"), ("model.pt", None), ("index.pt", None)):
        resumed, uninterrupted = (
            torch.load(r / "models" / name, weights_only=True) for r in (root, tmp_path / "reference")
        )
        resumed, uninterrupted = (w[key] if key else w for w in (resumed, uninterrupted))
        assert resumed.keys() == uninterrupted.keys()
        assert all(_equal(resumed[k], uninterrupted[k]) for k in uninterrupted), f"{name} differs"


def _equal(a, b) -> bool:
    """Bit-identical, through nested dicts and lists."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b
