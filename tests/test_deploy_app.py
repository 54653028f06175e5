"""The MONAI Deploy application run as plain Python (``python app.py -i -o -m``, the SDK's Holoscan executor on
CPU) on PNG and NIfTI inputs with text prompts: its masks are the bundles' own exported inference's. Needs the
``deploy`` extra; run with ``python -m pytest -m deploy`` (``bash .ci/run-deploy``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bundle_cli import (
    BUNDLES,
    EXPORTED_INFERENCE,
    TIRNET_TINY,
    run_bundle,
    tiny_args,
    tiny_network,
    train_and_export_tirnet,
)
from PIL import Image
from test_dicom_files import assert_seg_of
from test_segment import PROMPT, _chest, _dicom

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.apps.deploy import make_deploy_app
from lmseg_components.data import (
    make_synthetic_acdc,
    make_synthetic_msd,
    read_acdc_frames,
    read_lvit_split,
    read_msd_split,
)
from lmseg_components.export import export_bundle

pytest.importorskip("monai.deploy.core", reason="needs the deploy extra: pip install -e '.[deploy]'")

pytestmark = [pytest.mark.deploy, pytest.mark.bundle]

CT = tiny_network("tgcnet_ct_organs")


def _run_app(app: Path, inputs: Path, output: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "app.py", "-i", str(inputs), "-o", str(output), "-m", "models"]
    command += ["-w", str(output.parent / "work")]
    env = {**os.environ, "LMSEG_DEVICE": "cpu"}
    return subprocess.run(command, cwd=app, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def tirnet_app(tmp_path_factory):
    """TIRNet trained one epoch, exported with ``ckpt_export``, its CLI exported inference, and the app folder."""
    root = tmp_path_factory.mktemp("tirnet_app")
    ts = train_and_export_tirnet(root, seed=2)
    return root, make_deploy_app(root / "app", BUNDLES / "tirnet_lmis", ts, TIRNET_TINY)


def test_app_segments_png_images_with_their_prompts(tirnet_app):
    root, app = tirnet_app
    inputs = root / "inputs"
    inputs.mkdir()
    records = read_lvit_split(root / "data", "Test")
    for record in records:
        shutil.copy2(record["image"], inputs)
    prompts = {Path(r["image"]).name: r["text"] for r in records}
    (inputs / "prompts.json").write_text(json.dumps(prompts))
    run = _run_app(app, inputs, root / "out")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((root / "out" / "results.json").read_text())
    assert [Path(r["image"]).name for r in results] == sorted(prompts)
    for result in results:
        assert result["text"] == prompts[Path(result["image"]).name]
        assert 0.0 <= result["score"] <= 1.0
        mask = np.asarray(Image.open(root / "out" / result["mask"]))
        expected = np.asarray(Image.open(root / "eval" / "inference" / result["mask"]))
        assert mask.shape == (48, 48) and (mask == expected).all()
        assert result["voxels"].get("1", 0) == int((mask > 0).sum())
        assert isinstance(result["found"], bool) and (result["found"] or not mask.any())  # the run record's threshold


def test_app_writes_a_dicom_seg_for_a_dicom_input(tirnet_app):
    root, app = tirnet_app
    inputs = root / "dicom_inputs"
    inputs.mkdir()
    source = pydicom.dcmread(_dicom(inputs / "scan.dcm", _chest()))
    (inputs / "prompts.json").write_text(json.dumps({"default": PROMPT}))
    run = _run_app(app, inputs, root / "dicom_out")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (result,) = json.loads((root / "dicom_out" / "results.json").read_text())
    assert result["dicom_seg"] == "scan_seg.dcm"
    mask = np.asarray(Image.open(root / "dicom_out" / result["mask"])) > 0
    assert mask.shape == (source.Rows, source.Columns)
    assert_seg_of(root / "dicom_out" / result["dicom_seg"], source, mask, PROMPT)


def test_app_bad_input_exits_with_the_file_named(tirnet_app):
    root, app = tirnet_app
    bad = root / "bad"
    bad.mkdir()
    shutil.copy2(read_lvit_split(root / "data", "Test")[0]["image"], bad)
    (bad / "prompts.json").write_text('{"other.png": "a lesion"}')
    run = _run_app(app, bad, root / "bad_out")
    assert run.returncode == 1
    assert "error: " in run.stderr and "prompts.json: key 'other.png' names no image" in run.stderr
    assert "Traceback" not in run.stderr
    no_prompt = root / "no_prompt"
    no_prompt.mkdir()
    shutil.copy2(read_lvit_split(root / "data", "Test")[0]["image"], no_prompt)
    run = _run_app(app, no_prompt, root / "no_prompt_out")
    assert run.returncode == 1 and "no text prompt; tirnet_lmis needs one (prompts.json)" in run.stderr
    volume = root / "volume"
    volume.mkdir()
    shutil.copy2(read_lvit_split(root / "data", "Test")[0]["image"], volume / "a.png")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), str(volume / "ct.nii.gz"))
    (volume / "prompts.json").write_text('{"default": "a lesion"}')
    run = _run_app(app, volume, root / "volume_out")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "ct.nii.gz is a 3-D volume; tirnet_lmis segments 2-D images" in run.stderr
    assert not (root / "volume_out" / "a.png").exists()  # refused before the first mask


def test_app_segments_ct_volumes_with_the_organ_prompts(tmp_path):
    root = tmp_path
    make_synthetic_msd(root / "data", seed=3, n_cases=6, shape=(32, 32, 8))
    tiny = cli_overrides(CT) + ["--num_workers", "0", "--batch_size", "1", "--samples_per_volume", "2"]
    run = run_bundle("tgcnet_ct_organs", "training", ["configs/train.json"], root, *tiny, "--epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    program = export_bundle(BUNDLES / "tgcnet_ct_organs", overrides={"bundle_root": str(root), **CT})
    run = run_bundle("tgcnet_ct_organs", "inference", EXPORTED_INFERENCE, root, *tiny)
    assert run.returncode == 0, run.stderr[-3000:]
    app = make_deploy_app(root / "app", BUNDLES / "tgcnet_ct_organs", program, CT)
    inputs = root / "inputs"
    inputs.mkdir()
    records = read_msd_split(root / "data", "test")
    for record in records:
        shutil.copy2(record["image"], inputs)
    run = _run_app(app, inputs, root / "out")  # no prompts.json: one prompt per organ from the metadata
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((root / "out" / "results.json").read_text())
    assert len(results) == len(records)
    assert results[0]["text"] == [f"A computerized tomography of a {o}" for o in ("liver", "spleen", "kidney")]
    for result in results:
        out = nib.load(str(root / "out" / result["mask"]))
        image = nib.load(result["image"])
        assert out.shape == image.shape and np.allclose(out.affine, image.affine)
        assert out.get_data_dtype() == np.uint8
        expected = np.asarray(nib.load(str(root / "eval" / "inference" / result["mask"])).dataobj)
        assert (np.asarray(out.dataobj) == expected).all()
    (inputs / "prompts.json").write_text(json.dumps({"default": "A computerized tomography of a liver"}))
    run = _run_app(app, inputs, root / "out_one")
    assert run.returncode == 1 and "tgcnet_ct_organs takes 3 prompts (one per class" in run.stderr


def test_app_segments_acdc_frames_with_the_memory_bank(tmp_path):
    """J-RAS as a MONAI Deploy app: the trained checkpoint with its gallery and index, a patient's folder in (its
    ground truth skipped), one label volume per frame out, equal to the bundle's own inference, and results.json
    with each structure's mL and the guides of each slice."""
    root = tmp_path
    make_synthetic_acdc(root / "data", seed=0, n_patients=6, shape=(32, 32, 4))
    tiny = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "4"]
    run = run_bundle("jras_segmentation", "training", ["configs/train.json"], root, *tiny, "--epochs", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    run = run_bundle("jras_segmentation", "inference", ["configs/inference.json"], root, *tiny)
    assert run.returncode == 0, run.stderr[-3000:]
    app = make_deploy_app(root / "app", BUNDLES / "jras_segmentation", root / "models" / "model.pt")
    frames = read_acdc_frames(root / "data", "test")
    patient = Path(frames[0]["image"]).parent  # frames and their _gt files, as ACDC ships them
    run = _run_app(app, patient, root / "out")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((root / "out" / "results.json").read_text())
    mine = [f for f in frames if Path(f["image"]).parent == patient]
    assert [Path(r["image"]).name for r in results] == [Path(f["image"]).name for f in mine]
    lines = (root / "eval" / "inference" / "results.jsonl").read_text().splitlines()
    bundle_results = {r["image"]: r for r in map(json.loads, lines)}
    for result in results:
        out = nib.load(str(root / "out" / result["mask"]))
        image = nib.load(result["image"])
        assert out.shape == image.shape and np.allclose(out.affine, image.affine)
        expected = np.asarray(nib.load(str(root / "eval" / "inference" / result["mask"])).dataobj)
        assert (np.asarray(out.dataobj) == expected).all()
        same = bundle_results[str(Path(result["image"]).resolve())]
        assert result["structures"] == same["structures"] and result["slices"] == same["slices"]
        assert all(len(s["guides"]) == 2 for s in result["slices"])
