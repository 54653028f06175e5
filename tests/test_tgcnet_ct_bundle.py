"""The 3D TGC-Net CT bundle through ``python -m monai.bundle``: training learns (validation Dice rises),
evaluation writes per-volume per-organ Dice and HD95, inference writes NIfTI label volumes on the input grid,
``verify_net_in_out`` with organ-prompt features, and the ``torch.export`` program predicts what the eager
network predicts."""

from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_cli import BUNDLES, CPU, EXPORTED_INFERENCE, MLFLOW, mlflow_runs, run_bundle, tiny_network
from monai.bundle import verify_net_in_out

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_msd, read_msd_split
from lmseg_components.export import bundle_example_inputs, export_bundle, prepare_bundle_export
from lmseg_components.workflows import SMALL_CONFIG, load_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

SMALL = {**tiny_network("tgcnet_ct_organs"), "image_size": 64}  # 64 px slices, as the 2D bundle
TINY = cli_overrides(SMALL) + ["--num_workers", "0", "--batch_size", "1", "--samples_per_volume", "8", *CPU]
EPOCHS = 6


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str):
    return run_bundle("tgcnet_ct_organs", workflow, configs, root, *TINY, *extra)


@pytest.fixture(scope="module")
def trained(train_bundle):
    data = partial(make_synthetic_msd, seed=0, n_cases=6, shape=(64, 64, 8))
    return train_bundle("tgcnet_ct_organs", data, *TINY, *MLFLOW, "--epochs", str(EPOCHS))


def test_training_learns_and_checkpoints(trained):
    root, log = trained
    dice = [float(v) for v in re.findall(r"Epoch\[\d+\] Metrics -- .*?val_mean_dice: ([0-9.]+)", log)]
    assert len(dice) == EPOCHS, log[-2000:]
    losses = {}
    for epoch, loss in re.findall(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log):
        losses.setdefault(int(epoch), []).append(float(loss))
    first, last = np.mean(losses[1]), np.mean(losses[EPOCHS])
    assert last < first - 0.02, losses  # 24 updates of a tiny net; the slow test below trains to Dice >= 0.8
    assert dice[-1] > dice[0] + 0.01, dice
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "checkpoint.pt").is_file()
    assert list((root / "eval" / "tensorboard").glob("events.out.tfevents.*"))


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_evaluate_writes_per_volume_per_organ_dice_and_hd95(trained):
    root, _ = trained
    run = _bundle("evaluating", ["configs/train.json", "configs/evaluate.json"], root, *MLFLOW)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = mlflow_runs(root)  # --tracking mlflow: MONAI's MLflow handlers on trainer, validator, evaluator
    assert {"train_loss", "val_mean_dice"} <= runs["training"] and "val_mean_dice" in runs["evaluating"]
    summary = (root / "eval" / "metrics.csv").read_text()
    assert "val_mean_dice" in summary and "val_hd95" in summary
    test = read_msd_split(root / "data", "test")
    for name in ("val_mean_dice_raw.csv", "val_hd95_raw.csv"):
        rows = _rows(root / "eval" / name)
        assert [Path(r["filename"]).name for r in rows] == [r["name"] for r in test]
        assert all({"class0", "class1", "class2"} <= set(r) for r in rows)
    hd95 = [float(r["mean"]) for r in _rows(root / "eval" / "val_hd95_raw.csv")]
    assert all(np.isfinite(hd95)) and all(h >= 0 for h in hd95)


def test_inference_writes_label_volumes_on_the_input_grid(trained):
    root, _ = trained
    run = _bundle("inference", ["configs/inference.json"], root)
    assert run.returncode == 0, run.stderr[-3000:]
    for record in read_msd_split(root / "data", "test"):
        out = nib.load(str(root / "eval" / "inference" / f"{record['case_id']}_seg.nii.gz"))
        image = nib.load(record["image"])
        assert out.shape == image.shape and np.allclose(out.affine, image.affine)
        labels = np.asarray(out.dataobj)
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
        truth = np.asarray(nib.load(record["label"]).dataobj)
        assert (labels > 0).any() and ((labels > 0) & (truth > 0)).sum() > 0.3 * (truth > 0).sum()


@pytest.mark.slow  # CI's verify-bundles step runs net_in_out and the exports of every bundle on each submission
def test_verify_and_exported_program_match_the_eager_network(trained):
    root, _ = trained
    configs = ["inference.json", SMALL_CONFIG]
    parser = load_bundle(BUNDLES / "tgcnet_ct_organs", configs, {"bundle_root": str(root), **SMALL})
    _, named = bundle_example_inputs(parser)  # small.json's MiniLM: 384-wide tokens (the metadata's paper: 768)
    assert named["text"].shape == (1, 3, 32, 384) and named["aux_text"].shape == (1, 3, 32, 384)
    folder = BUNDLES / "tgcnet_ct_organs" / "configs"
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(folder / "metadata.json"),
        config_file=[str(folder / c) for c in configs],
        device="cpu",
        extra_forward_args=named,
        bundle_root=str(root),
        **SMALL,
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [SMALL["image_size"]] * 2},
    )
    eager = sorted((root / "eval" / "inference").glob("*_seg.nii.gz"))
    assert eager, "run test_inference_writes_label_volumes_on_the_input_grid first (module order)"
    volumes = {p.name: np.asarray(nib.load(str(p)).dataobj) for p in eager}
    export_bundle(BUNDLES / "tgcnet_ct_organs", overrides={"bundle_root": str(root), **SMALL})
    run = _bundle("inference", EXPORTED_INFERENCE, root)
    assert run.returncode == 0, run.stderr[-3000:]
    for name, labels in volumes.items():  # equal up to voxels within float error of the 0.5 threshold
        exported = np.asarray(nib.load(str(root / "eval" / "inference" / name)).dataobj)
        assert exported.shape == labels.shape and (exported != labels).mean() < 1e-3


def test_export_uses_the_values_the_model_was_trained_with(trained):
    """``lmseg export . --bundle_root <root>`` after training at 64 px used to build a 128 px program (the
    inference.json default); the trained values come from the run record in ``models/checkpoint.pt``."""
    root, _ = trained
    _, inputs, _, _ = prepare_bundle_export(BUNDLES / "tgcnet_ct_organs", overrides={"bundle_root": str(root)})
    assert inputs[0].shape == (1, 1, 64, 64)  # and network_def loaded the weights: dim, cnn_width, cost_dim as trained
    with pytest.raises(ValueError, match="trained with image_size=64"):
        prepare_bundle_export(BUNDLES / "tgcnet_ct_organs", overrides={"bundle_root": str(root), "image_size": 128})
