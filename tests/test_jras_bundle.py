"""The J-RAS bundle through ``python -m monai.bundle``: joint training that learns, a persisted gallery and
index that match the model, evaluation, inference on whole frames (label volumes, mL, the guides of each slice),
a stale index refused, verify and export."""

from __future__ import annotations

import csv
import json
import re
import shutil
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import (
    BUNDLES,
    CPU,
    MLFLOW,
    lmseg,
    mlflow_runs,
    monai_bundle,
    run_bundle,
    small_record,
    tiny_args,
    tiny_network,
)

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.data import make_synthetic_acdc, read_acdc_frames, read_acdc_split
from lmseg_components.metrics import hd95_penalty
from lmseg_components.outputs import RESULTS_LINES
from lmseg_components.workflows import load_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

TINY = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "4", *CPU]
EPOCHS = 10


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str):
    return run_bundle("jras_segmentation", workflow, configs, root, *TINY, *extra)


@pytest.fixture(scope="module")
def trained(train_bundle):
    data = partial(make_synthetic_acdc, seed=0, n_patients=8, shape=(32, 32, 4))
    return train_bundle("jras_segmentation", data, *TINY, *MLFLOW, "--epochs", str(EPOCHS), "--learning_rate", "0.003")


def test_joint_training_learns_and_logs_both_steps(trained):
    root, log = trained
    dice = [float(v) for v in re.findall(r"Metrics -- .*val_mean_dice: ([0-9.]+)", log)]
    # +0.1 with the ResNet retriever; the mask-embedding retriever's guides slow this tiny run (0.146 -> 0.226)
    assert len(dice) == EPOCHS and max(dice[-3:]) > dice[0] + 0.05, dice
    assert len(re.findall(r"retrieval index rebuilt", log)) == 2 * EPOCHS  # each epoch + before each validation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(root / "eval" / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "contrastive_loss", "hit_rate", "retrieval_hit_rate", "val_mean_dice"} <= tags


def test_persisted_gallery_holds_training_items_only_and_index_matches_model(trained):
    root, _ = trained
    assert set(torch.load(root / "models" / "model.pt", weights_only=True)) == {"segmenter", "retriever"}
    tiny = tiny_network("jras_segmentation")
    parser = load_bundle(BUNDLES / "jras_segmentation", ["inference.json"], {"bundle_root": str(root), **tiny})
    net = parser.get_parsed_content("network_def")
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    net.segmenter.load_state_dict(state["segmenter"])
    net.retriever.load_state_dict(state["retriever"])
    net.load_gallery(root / "models" / "gallery.pt")
    net.load_index(root / "models" / "index.pt")  # built by the saved (best) retriever over this gallery
    train = {r["name"] for r in read_acdc_split(root / "data", "train")}
    held_out = {r["name"] for part in ("val", "test") for r in read_acdc_split(root / "data", part)}
    assert set(net.gallery_ids) == train and not (set(net.gallery_ids) & held_out)


def test_evaluating_writes_metrics_and_per_slice_csv(trained):
    root, _ = trained
    run = _bundle("evaluating", ["configs/train.json", "configs/evaluate.json"], root, *MLFLOW)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = mlflow_runs(root)  # --tracking mlflow: MONAI's MLflow handlers on trainer, validator, evaluator
    assert {"train_loss", "val_mean_dice"} <= runs["training"] and "val_mean_dice" in runs["evaluating"]
    metrics = dict(line.split(",") for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    assert float(metrics["val_mean_dice"]) > 0.1 and "val_hd95" in metrics
    quality = {
        f"{p}{k}": float(metrics[f"{p}retrieval_{k}"])
        for p in ("", "oracle_", "random_")
        for k in ("hit_rate", "mask_dice")
    }
    assert all(0.0 <= v <= 1.0 for v in quality.values()), quality
    # the trained retriever finds guides whose masks agree with the query's far more often than chance: here
    # hit rate 0.625 vs 0.125 and mask Dice 0.50 vs 0.27 (an index of random embeddings: 0.19 and 0.25)
    assert quality["hit_rate"] >= quality["random_hit_rate"] + 0.25, quality
    assert quality["mask_dice"] >= quality["random_mask_dice"] + 0.1, quality
    with open(root / "eval" / "val_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    test = read_acdc_split(root / "data", "test")
    assert len(rows) == 1 + len(test)
    # the ACDC protocol: per 3D frame, HD95 in mm, a miss scored with the field-of-view diagonal (75.3 mm here)
    frame = nib.load(test[0]["label"])
    penalty = hd95_penalty(frame.shape, frame.header.get_zooms())
    dice = {k: float(metrics[f"frame_{k}"]) for k in ("dice_rv", "dice_myo", "dice_lv", "mean_dice")}
    hd95 = {k: float(metrics[f"frame_{k}"]) for k in ("hd95_rv", "hd95_myo", "hd95_lv", "mean_hd95")}
    assert all(0.0 <= v <= 1.0 for v in dice.values()), dice
    assert all(0.0 <= v <= penalty for v in hd95.values()), (hd95, penalty)
    assert float(metrics["frame_mean_dice"]) > 0.1
    with open(root / "eval" / "frame_metrics.csv") as f:
        frames = [row["frame"] for row in csv.DictReader(f)]
    assert frames == sorted({r["name"].rsplit("_z", 1)[0] for r in test}) + ["mean", "std"]


def test_inference_writes_label_volumes_on_the_frames_grid_with_the_guides_of_each_slice(trained):
    root, _ = trained
    run = _bundle("inference", ["configs/inference.json"], root)
    assert run.returncode == 0, run.stderr[-3000:]
    from PIL import Image

    out = root / "eval" / "inference"
    frames = read_acdc_frames(root / "data", "test")
    results = [json.loads(line) for line in (out / RESULTS_LINES).read_text().splitlines()]
    assert [r["image"] for r in results] == [f["image"] for f in frames]
    for frame, result in zip(frames, results, strict=True):
        image = nib.load(frame["image"])
        seg = nib.load(out / f"{frame['name']}_seg.nii.gz")  # one label volume on the frame's grid and affine
        assert seg.shape == image.shape and np.allclose(seg.affine, image.affine)
        labels = np.asarray(seg.dataobj)
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000
        for value, name in ((1, "right ventricle"), (2, "myocardium"), (3, "left ventricle")):
            voxels = int((labels == value).sum())
            assert result["structures"][name] == {"voxels": voxels, "ml": pytest.approx(voxels * voxel_ml, abs=1e-3)}
        assert [s["slice"] for s in result["slices"]] == list(range(image.shape[2]))
        for s in result["slices"]:  # k = 2 guides per slice from the training gallery, never the frame's patient
            assert len(s["guides"]) == 2 and all(g["case_id"] != frame["case_id"] for g in s["guides"])
            assert s["guides"][0]["similarity"] >= s["guides"][1]["similarity"]
            panel = Image.open(out / f"{frame['name']}_z{s['slice']:02d}_panel.png")
            assert panel.width >= 4 * 256  # query, 2 guides, prediction side by side, 256 px each


def test_lmseg_segment_on_a_frame_equals_the_bundles_inference(trained, tmp_path):
    """``lmseg segment --bundle jras_segmentation`` on a NIfTI frame: the bundle inference's label volume and
    results (the trained values from the run record, the bank beside the checkpoint)."""
    root, _ = trained
    frame = read_acdc_frames(root / "data", "test")[0]
    expected = root / "eval" / "inference" / f"{frame['name']}_seg.nii.gz"
    if not expected.is_file():
        assert _bundle("inference", ["configs/inference.json"], root).returncode == 0
    segment = ["segment", "--bundle", "jras_segmentation", "--model", str(root / "models" / "model.pt"), frame["image"]]
    run = lmseg(*segment, "--out", str(tmp_path / "out"), "--device", "cpu")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{frame['name']}_seg.nii.gz (right ventricle " in run.stdout and "; guided by patient" in run.stdout
    seg = nib.load(tmp_path / "out" / f"{frame['name']}_seg.nii.gz")
    assert np.array_equal(np.asarray(seg.dataobj), np.asarray(nib.load(expected).dataobj))
    (result,) = json.loads((tmp_path / "out" / "results.json").read_text())
    lines = (root / "eval" / "inference" / RESULTS_LINES).read_text().splitlines()
    bundle_result = next(r for r in map(json.loads, lines) if r["image"] == frame["image"])
    assert result["structures"] == bundle_result["structures"] and result["slices"] == bundle_result["slices"]
    assert (tmp_path / "out" / f"{frame['name']}_overlay.png").is_file()
    refused = lmseg(*segment, "--text", "the left ventricle", "--out", str(tmp_path / "text"))
    assert refused.returncode != 0 and refused.stderr.strip().splitlines()[-1] == (
        "error: jras_segmentation takes no text prompt: it is guided by the cases of its memory bank"
    )


def test_inference_refuses_an_index_from_another_retriever(trained, tmp_path):
    root, _ = trained
    shutil.copytree(root / "models", tmp_path / "models")
    shutil.copytree(root / "data", tmp_path / "data")
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    name = next(iter(state["retriever"]))
    state["retriever"][name] = state["retriever"][name] + 0.01
    torch.save(state, tmp_path / "models" / "model.pt")
    run = _bundle("inference", ["configs/inference.json"], tmp_path)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "rebuild the index from the current retriever" in last, run.stderr[-2000:]
    assert last.endswith(f"Rebuild it from the gallery: lmseg jras-bank rebuild --bundle_root {tmp_path}")


@pytest.mark.slow  # CI's verify-bundles step runs net_in_out and the exports of every bundle on each submission
def test_verify_net_in_out_and_torchscript_export_of_both_networks(trained):
    root, _ = trained
    common = ["--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"]
    small = cli_overrides({"features": tiny_network("jras_segmentation")["features"]})
    verify = monai_bundle("jras_segmentation", "verify_net_in_out", "segmenter_def", *common, "--device", "cpu")
    assert verify.returncode == 0 and "verified with no error" in verify.stdout + verify.stderr
    for net_id, key in (("segmenter_def", "segmenter"), ("retriever_def", "retriever")):
        target = root / "models" / f"{key}.ts"
        export = monai_bundle(
            "jras_segmentation",
            "ckpt_export",
            net_id,
            "--filepath",
            str(target),
            "--ckpt_file",
            str(root / "models" / "model.pt"),
            "--key_in_ckpt",
            key,
            *common,
            *small,
        )
        assert export.returncode == 0, export.stderr[-2000:]
    segmenter = torch.jit.load(str(root / "models" / "segmenter.ts"))
    retriever = torch.jit.load(str(root / "models" / "retriever.ts"))
    assert segmenter(torch.rand(1, 6, 32, 32)).shape == (1, 4, 32, 32)
    embedding = retriever(torch.rand(2, 1, 32, 32))
    assert embedding.shape == (2, 3 * 16 * 16) and torch.allclose(embedding.norm(dim=1), torch.ones(2), atol=1e-5)


def test_the_image_encoder_retriever_is_rebuilt_from_the_run_record(tmp_path):
    """The default retriever embeds its own coarse masks (3 foreground classes x 16 x 16 cells);
    ``configs/retriever_resnet.json`` trains the paper's image encoder + projection head instead. A run records
    which (``retriever_kind``), so ``inference.json`` alone rebuilds the retriever a run was trained with; the
    overlay still loads a run whose record predates the kind (bundle 0.2.0 models)."""
    from lmseg_components.retrieval import MaskEmbeddingRetriever, Retriever

    bundle = BUNDLES / "jras_segmentation"
    default = load_bundle(bundle, ["train.json"]).get_parsed_content("retriever_def")
    assert isinstance(default, MaskEmbeddingRetriever) and default.embed_dim == 3 * 16 * 16
    train = load_bundle(bundle, ["train.json", "retriever_resnet.json"])
    assert isinstance(train.get_parsed_content("retriever_def"), Retriever)

    record = {k: train.get_parsed_content(k) for k in small_record("jras_segmentation")}
    record |= {"retriever_backbone": "resnet18", "retriever_embed_dim": 64}  # not the defaults: read, not assumed
    models = tmp_path / "models"
    models.mkdir()
    (models / "run_record.json").write_text(json.dumps(record))
    inference = load_bundle(bundle, ["inference.json"], {"bundle_root": str(tmp_path)})
    resnet = inference.get_parsed_content("retriever_def")
    assert isinstance(resnet, Retriever) and resnet.embed_dim == 64
    assert len(resnet.trunk.layer1) == 2  # resnet18's two blocks per layer (resnet10: one)

    del record["retriever_kind"]  # a record of bundle 0.8 or older: the overlay says which retriever
    (models / "run_record.json").write_text(json.dumps(record))
    for overlays, kind in (([], MaskEmbeddingRetriever), (["retriever_resnet.json"], Retriever)):
        inference = load_bundle(bundle, ["inference.json", *overlays], {"bundle_root": str(tmp_path)})
        assert isinstance(inference.get_parsed_content("retriever_def"), kind)


def test_an_unknown_retriever_kind_is_named():
    from lmseg_components.retrieval import create_retriever

    with pytest.raises(
        ValueError, match=r"retriever_kind must be one of \['mask_embedding', 'image_encoder'\], got 'vit'"
    ):
        create_retriever("vit", in_channels=1, num_classes=4, pool_grid=4)
