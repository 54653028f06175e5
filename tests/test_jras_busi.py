"""The J-RAS bundle on BUSI (breast ultrasound, binary, PNG) through ``python -m monai.bundle``: the ``busi.json``
overlay trains and evaluates on the synthetic BUSI layout, ``busi_inference.json`` writes masks of each image's
own size, and a case's several masks are read as their union."""

from __future__ import annotations

import csv
import json
import re
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES, run_bundle, tiny_args
from monai.transforms import Compose, Resize
from PIL import Image

from lmseg_components.data import make_synthetic_busi, read_busi_split
from lmseg_components.outputs import RESULTS_LINES
from lmseg_components.workflows import load_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

TINY = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "4"]
TRAIN = ["configs/train.json", "configs/busi.json"]
EVALUATE = ["configs/train.json", "configs/busi.json", "configs/evaluate.json"]
INFERENCE = ["configs/inference.json", "configs/busi_inference.json"]
EPOCHS = 8


def _bundle(workflow: str, configs: list[str], root: Path, *extra: str):
    return run_bundle("jras_segmentation", workflow, configs, root, *TINY, *extra)


@pytest.fixture(scope="module")
def trained(train_bundle):
    data = partial(make_synthetic_busi, seed=0, n_benign=7, n_malignant=5, n_normal=3, size=48)
    return train_bundle(
        "jras_segmentation", data, *TINY, "--epochs", str(EPOCHS), "--learning_rate", "0.003", configs=TRAIN
    )


def test_masks_of_one_image_are_united_and_images_are_grey(tmp_path):
    make_synthetic_busi(tmp_path, seed=0, n_benign=6, n_malignant=1, n_normal=1, size=40, second_lesion=1.0)
    parser = load_bundle(BUNDLES / "jras_segmentation", ["train.json", "busi.json"], {"dataset_dir": str(tmp_path)})
    parser["image_size"] = 32
    load = Compose(parser.get_parsed_content("load_transforms"))
    record = next(r for r in read_busi_split(tmp_path, "train") if len(r["label"]) == 2)
    item = load(record)
    first, second = (np.asarray(Image.open(m)) > 0 for m in record["label"])
    assert (first & ~second).any() and (second & ~first).any()
    union = (first | second).T[None].astype(np.float32)  # MONAI's PIL reader gives (width, height)
    expected = Resize((32, 32), mode="nearest")(union)
    assert item["image"].shape == (1, 32, 32) and item["label"].dtype == torch.long
    assert torch.equal(item["label"].as_tensor(), torch.as_tensor(expected).long())


def test_training_on_busi_learns_a_binary_task_with_training_gallery_only(trained):
    root, log = trained
    dice = [float(v) for v in re.findall(r"Metrics -- .*val_mean_dice: ([0-9.]+)", log)]
    # 0.12 after the first epoch, 0.39 after the eighth
    assert len(dice) == EPOCHS and max(dice[-3:]) > 0.3 and max(dice[-3:]) > dice[0] + 0.15, dice
    gallery = torch.load(root / "models" / "gallery.pt", weights_only=True)
    assert set(gallery["ids"]) == {r["name"] for r in read_busi_split(root / "data", "train")}
    assert gallery["case_ids"] == [f"{name.split('_', 1)[0]}/{name.split('_', 1)[1]}" for name in gallery["ids"]]
    assert set(gallery["labels"].unique().tolist()) == {0, 1} and (root / "models" / "model.pt").is_file()


def test_evaluating_and_inference_on_busi(trained):
    root, _ = trained
    run = _bundle("evaluating", EVALUATE, root)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = dict(line.split(",") for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    assert 0.0 <= float(metrics["val_mean_dice"]) <= 1.0
    assert 0.0 <= float(metrics["oracle_retrieval_mask_dice"]) <= 1.0
    test = read_busi_split(root / "data", "test")
    with open(root / "eval" / "val_mean_dice_raw.csv") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) == 1 + len(test)
    run = _bundle("inference", INFERENCE, root)
    assert run.returncode == 0, run.stderr[-3000:]
    masks = sorted((root / "eval" / "inference").glob("*_mask.png"))
    assert len(masks) == len(test)
    results = {
        Path(r["image"]).stem: r
        for r in map(json.loads, (root / "eval" / "inference" / RESULTS_LINES).read_text().splitlines())
    }
    assert len(results) == len(test)
    for record in test:
        image = Image.open(record["image"])
        mask = Image.open(root / "eval" / "inference" / f"{Path(record['image']).stem}_mask.png")
        assert mask.size == image.size and set(np.unique(np.asarray(mask)).tolist()) <= {0, 1}
        result = results[Path(record["image"]).stem]  # the lesion's pixels and the 2 gallery images that guided it
        assert result["structures"] == {"lesion": {"voxels": int((np.asarray(mask) > 0).sum())}}
        (only,) = result["slices"]
        assert len(only["guides"]) == 2 and all(g["case_id"] != record["case_id"] for g in only["guides"])


def test_lmseg_segment_on_busi_images_equals_the_bundles_inference(trained, tmp_path):
    """``segment`` (``lmseg segment``) with the BUSI model: the 2D inference config (the run record's two classes),
    the bundle inference's masks and guides; a volume is refused, naming it."""
    from lmseg_components.apps.segment import segment

    root, _ = trained
    out = root / "eval" / "inference"
    if not (out / RESULTS_LINES).is_file():
        assert _bundle("inference", INFERENCE, root).returncode == 0
    test = read_busi_split(root / "data", "test")[:2]
    results = segment([r["image"] for r in test], "jras_segmentation", root / "models" / "model.pt", tmp_path / "o")
    bundle_results = {r["image"]: r for r in map(json.loads, (out / RESULTS_LINES).read_text().splitlines())}
    for record, result in zip(test, results, strict=True):
        stem = Path(record["image"]).stem
        mine = np.asarray(Image.open(tmp_path / "o" / result["mask"])) > 0
        assert result["mask"] == f"{stem}_mask.png" and np.array_equal(
            mine, np.asarray(Image.open(out / f"{stem}_mask.png")) > 0
        )
        expected = bundle_results[str(Path(record["image"]).resolve())]
        assert result["structures"] == expected["structures"] and result["slices"] == expected["slices"]
    volume = tmp_path / "frame.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), volume)
    with pytest.raises(ValueError, match=r"frame\.nii\.gz is a 3-D volume; this jras_segmentation model segments 2-D"):
        segment([volume], "jras_segmentation", root / "models" / "model.pt", tmp_path / "v")


def test_the_bank_takes_busi_cases(trained, tmp_path):
    """``lmseg jras-bank add`` on a BUSI folder (with the bundle's busi.json): the images become gallery items of
    the user's gallery, listed with their folder, and the index holds them."""
    from lmseg_components.apps.bank import add_cases, list_cases

    root, _ = trained
    new = tmp_path / "new"
    make_synthetic_busi(new, seed=5, n_benign=2, n_malignant=1, n_normal=0, size=48)
    for path in sorted(new.rglob("*.png")):  # new names: BUSI's ids are <class>/<image>, as training's are
        path.rename(path.with_name(path.name.replace("(", "(new ")))
    configs = ",".join(str(BUNDLES / "jras_segmentation" / c) for c in TRAIN)
    bank = tmp_path / "bank"
    (bank / "models").mkdir(parents=True)
    for name in ("model.pt", "gallery.pt", "index.pt", "checkpoint.pt", "run_record.json"):
        (bank / "models" / name).write_bytes((root / "models" / name).read_bytes())
    added = add_cases(bank, new, config_file=configs)
    assert [c.case_id for c in added] == [
        "benign/benign (new 1)",
        "benign/benign (new 2)",
        "malignant/malignant (new 1)",
    ]
    user = torch.load(bank / "models" / "user_gallery.pt", weights_only=True)
    assert user["images"].shape[1:] == (1, 32, 32) and set(user["labels"].unique().tolist()) <= {0, 1}
    listed = list_cases(bank, configs)
    assert listed[-3:] == added and all(c.source == str(new.resolve()) for c in added)
    index = torch.load(bank / "models" / "index.pt", weights_only=True)
    assert index["ids"][-3:] == user["ids"]
