"""The MONAI Deploy app's SDK-free parts: the mask writer, the app folder generator and the exported-bundle
predictor (its masks are the bundle's own exported inference's)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES, TIRNET_TINY, train_and_export_tirnet
from monai.data import MetaTensor
from PIL import Image

from lmseg_components.apps.deploy import make_deploy_app
from lmseg_components.data import read_lvit_split
from lmseg_components.inference import TextBundlePredictor, find_bundle, mask_path, write_mask

pytestmark = pytest.mark.bundle  # trains and exports through python -m monai.bundle, runs the lmseg CLI


def _png(path: Path, size: int = 8) -> Path:
    Image.fromarray(np.zeros((size, size), np.uint8)).save(path)
    return path


def test_write_mask_png_and_nifti(tmp_path):
    mask = torch.zeros(1, 6, 5)
    mask[0, 1:3, 2:4] = 1
    path = write_mask(MetaTensor(mask, meta={"filename_or_obj": "/in/case_7.png"}), tmp_path)
    assert path == tmp_path / "case_7_mask.png" == mask_path("/in/case_7.png", tmp_path, 2)
    assert set(np.unique(np.asarray(Image.open(path)))) == {0, 255}
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    labels = torch.zeros(1, 6, 5, 4)
    labels[0, :2, :, 1] = 2
    volume = MetaTensor(labels, affine=torch.as_tensor(affine), meta={"filename_or_obj": "/in/ct_1.nii.gz"})
    saved = nib.load(str(write_mask(volume, tmp_path / "sub")))
    assert saved.get_filename().endswith("sub/ct_1_seg.nii.gz") and saved.get_data_dtype() == np.uint8
    assert np.allclose(saved.affine, affine) and (np.asarray(saved.dataobj) == labels[0].numpy()).all()
    with pytest.raises(ValueError, match="filename_or_obj"):
        write_mask(torch.zeros(1, 4, 4), tmp_path)
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        write_mask(MetaTensor(torch.zeros(2, 4, 4), meta={"filename_or_obj": "x.png"}), tmp_path)


@pytest.fixture(scope="module")
def tirnet_exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("tirnet_deploy")
    train_and_export_tirnet(root)
    return root


def test_predictor_reproduces_the_bundle_exported_inference(tirnet_exported):
    root = tirnet_exported
    predictor = TextBundlePredictor(BUNDLES / "tirnet_lmis", "cpu", {"bundle_root": str(root), **TIRNET_TINY})
    for record in read_lvit_split(root / "data", "Test"):
        pred = predictor({"image": record["image"], "text": record["text"]})["pred"]
        assert pred.shape == (1, 48, 48)
        written = write_mask(pred, root / "deploy")
        expected = root / "eval" / "inference" / written.name
        assert (np.asarray(Image.open(written)) == np.asarray(Image.open(expected))).all()


def test_predictor_checks_the_prompt_and_the_device(tirnet_exported):
    root = tirnet_exported
    predictor = TextBundlePredictor(BUNDLES / "tirnet_lmis", "cpu", {"bundle_root": str(root), **TIRNET_TINY})
    assert predictor.num_prompts is None and predictor.default_text is None
    with pytest.raises(ValueError, match="case.png: no text prompt"):
        predictor.check_text({"image": "case.png"})
    with pytest.raises(ValueError, match="case.png: tirnet_lmis takes one prompt string"):
        predictor.check_text({"image": "case.png", "text": ["a", "b"]})
    with pytest.raises(ValueError, match="device must be"):
        TextBundlePredictor(BUNDLES / "tirnet_lmis", "$__import__('os')")


def test_predictor_refuses_a_volume_and_a_side_of_one_pixel(tirnet_exported, tmp_path):
    root = tirnet_exported
    predictor = TextBundlePredictor(BUNDLES / "tirnet_lmis", "cpu", {"bundle_root": str(root), **TIRNET_TINY})
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), str(tmp_path / "ct.nii.gz"))
    expected = r"ct.nii.gz is a 3-D volume; tirnet_lmis segments 2-D images \(PNG, JPEG, DICOM\): use tgcnet_ct_organs"
    with pytest.raises(ValueError, match=expected):
        predictor({"image": str(tmp_path / "ct.nii.gz"), "text": "a lesion"})
    Image.fromarray(np.full((1, 40), 100, np.uint8)).save(tmp_path / "line.png")
    with pytest.raises(ValueError, match="line.png: 40 x 1 pixels; segmenting needs at least 2 pixels on each side"):
        predictor({"image": str(tmp_path / "line.png"), "text": "a lesion"})


def test_find_bundle_and_missing_exported_config(tmp_path):
    assert find_bundle(BUNDLES / "tirnet_lmis") == BUNDLES / "tirnet_lmis"
    shutil.copytree(BUNDLES / "tirnet_lmis" / "configs", tmp_path / "one" / "tirnet_lmis" / "configs")
    assert find_bundle(tmp_path / "one") == tmp_path / "one" / "tirnet_lmis"
    shutil.copytree(BUNDLES / "tgcnet_lmis" / "configs", tmp_path / "one" / "tgcnet_lmis" / "configs")
    with pytest.raises(FileNotFoundError, match=r"found several \(tgcnet_lmis, tirnet_lmis\)"):
        find_bundle(tmp_path / "one")
    with pytest.raises(FileNotFoundError, match="found none"):
        find_bundle(tmp_path)
    (tmp_path / "one" / "tirnet_lmis" / "configs" / "inference_exported.json").unlink()
    with pytest.raises(FileNotFoundError, match="no configs/inference_exported.json"):
        TextBundlePredictor(tmp_path / "one" / "tirnet_lmis")
    with pytest.raises(ValueError, match="jras_segmentation takes no text prompt"):
        TextBundlePredictor(BUNDLES / "jras_segmentation")


def test_make_deploy_app_writes_the_folder(tirnet_exported, tmp_path):
    app = make_deploy_app(
        tmp_path / "app", BUNDLES / "tirnet_lmis", tirnet_exported / "models" / "model.ts", TIRNET_TINY
    )
    for name in ("app.py", "__main__.py", "app.yaml", "requirements.txt", "lmseg_components/apps/deploy/app.py"):
        assert (app / name).is_file(), name
    bundle = app / "models" / "tirnet_lmis"
    assert (bundle / "models" / "model.ts").is_file() and (bundle / "LICENSE").is_file()
    config = json.loads((bundle / "configs" / "inference_exported.json").read_text())
    assert config["image_size"] == 32 and config["width"] == 4 and "network" in config
    requirements = (app / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("monai-deploy-app-sdk") for r in requirements)
    assert any(r.startswith("monai") and "<" in r for r in requirements)
    assert not any(r.startswith("holoscan-cli") for r in requirements)
    yaml_text = (app / "app.yaml").read_text()
    assert "application:" in yaml_text and "resources:" in yaml_text and "tirnet_lmis" in yaml_text
    compile((app / "app.py").read_text(), "app.py", "exec")


def test_make_deploy_app_errors(tirnet_exported, tmp_path):
    ts = tirnet_exported / "models" / "model.ts"
    with pytest.raises(FileNotFoundError, match="jras_segmentation runs with its memory bank: no gallery.pt, index.pt"):
        make_deploy_app(tmp_path / "a", BUNDLES / "jras_segmentation", ts)
    with pytest.raises(ValueError, match=r"loads \['model.ts'\], not model.pt"):
        make_deploy_app(tmp_path / "a", BUNDLES / "tirnet_lmis", tirnet_exported / "models" / "model.pt")
    with pytest.raises(FileNotFoundError, match="exported network not found"):
        make_deploy_app(tmp_path / "a", BUNDLES / "tirnet_lmis", tmp_path / "model.ts")
    with pytest.raises(ValueError, match="top-level config ids"):
        make_deploy_app(tmp_path / "a", BUNDLES / "tirnet_lmis", ts, {"network_def#width": 4})


def test_deploy_app_cli_reports_bad_input(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "lmseg_components.apps.cli", "deploy-app", "--out", str(tmp_path / "app")]
        + ["--bundle", str(BUNDLES / "jras_segmentation")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "error:" in run.stderr and "Traceback" not in run.stderr
